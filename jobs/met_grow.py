"""`ray job submit -- python jobs/met_grow.py CONF [key=value ...]`: runs `medray met grow`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("met_grow")
