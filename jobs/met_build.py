"""Entrypoint for `ray job submit -- python jobs/met_build.py CONF [key=value ...]`."""

import sys

from medray.cli import main

if __name__ == "__main__":
    sys.argv = ["medray", "met", "build", *sys.argv[1:]]
    main()
