"""Entrypoint for `ray job submit -- python jobs/train_sft.py CONF [key=value ...]`."""

import sys

from medray.cli import main

if __name__ == "__main__":
    sys.argv = ["medray", "train", "sft", *sys.argv[1:]]
    main()
