"""Entrypoint for `ray job submit -- python jobs/synth.py CONF [key=value ...]`."""

import sys

from medray.cli import main

if __name__ == "__main__":
    sys.argv = ["medray", "synth", "run", *sys.argv[1:]]
    main()
