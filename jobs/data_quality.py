"""`ray job submit -- python jobs/data_quality.py CONF [key=value ...]`: runs `medray data quality-train`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("data_quality")
