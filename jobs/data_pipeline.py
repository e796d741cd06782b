"""Entrypoint for `ray job submit -- python jobs/data_pipeline.py CONF [key=value ...]`."""

import sys

from medray.cli import main

if __name__ == "__main__":
    sys.argv = ["medray", "data", "run", *sys.argv[1:]]
    main()
