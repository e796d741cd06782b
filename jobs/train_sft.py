"""`ray job submit -- python jobs/train_sft.py CONF [key=value ...]`: runs `medray train sft`."""

from medray.job_catalog import run_job

if __name__ == "__main__":
    run_job("train_sft")
