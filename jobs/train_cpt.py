"""`ray job submit -- python jobs/train_cpt.py CONF [key=value ...]`: runs `medray train cpt`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("train_cpt")
