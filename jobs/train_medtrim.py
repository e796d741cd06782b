"""`ray job submit -- python jobs/train_medtrim.py CONF [key=value ...]`: runs `medray medtrim train`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("train_medtrim")
