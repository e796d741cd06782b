"""Entrypoint for `ray job submit -- python jobs/met_grow.py CONF [key=value ...]`."""

import sys

from medray.cli import main

if __name__ == "__main__":
    sys.argv = ["medray", "met", "grow", *sys.argv[1:]]
    main()
