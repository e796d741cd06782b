"""`ray job submit -- python jobs/met_build.py CONF [key=value ...]`: runs `medray met build`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("met_build")
