"""Entrypoint for `ray job submit -- python jobs/train_medtrim.py CONF [key=value ...]`."""

import sys

from medray.cli import main

if __name__ == "__main__":
    sys.argv = ["medray", "medtrim", "train", *sys.argv[1:]]
    main()
