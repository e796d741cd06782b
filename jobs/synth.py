"""`ray job submit -- python jobs/synth.py CONF [key=value ...]`: runs `medray synth run`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("synth")
