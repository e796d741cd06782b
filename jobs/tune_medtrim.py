"""`ray job submit -- python jobs/tune_medtrim.py CONF [key=value ...]`: runs `medray medtrim tune`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("tune_medtrim")
