"""`ray job submit -- python jobs/data_pipeline.py CONF [key=value ...]`: runs `medray data run`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("data_pipeline")
