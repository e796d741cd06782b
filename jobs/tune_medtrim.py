"""Entrypoint for `ray job submit -- python jobs/tune_medtrim.py CONF [key=value ...]`."""

import sys

from medray.cli import main

if __name__ == "__main__":
    sys.argv = ["medray", "medtrim", "tune", *sys.argv[1:]]
    main()
