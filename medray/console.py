"""What commands print: a readable table by default, JSON with `--json`."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False)
err_console = Console(stderr=True)


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True):
    """Send everything written to file descriptor 1 to stderr while the block runs.

    With `--json`, stdout must hold the JSON alone, but Ray prints to the driver's stdout from
    C++ and forwards its workers' output there; moving the descriptor catches all of it.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):  # Python-level writes too, where sys.stdout is not fd 1
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


def key_values(title: str, data: dict[str, Any]) -> None:
    table(title, ("key", "value"), ((k, v) for k, v in data.items()))


def status(message: str) -> None:
    """Progress for long work, on stderr so `--json` output stays clean."""
    err_console.print(f"[dim]{message}[/dim]")


def run_and_print(job, printer, as_json: bool) -> None:
    """Run `job(progress)` and print what it returns: JSON alone on stdout with `--json`, else `printer`'s tables.

    With `--json` progress is silent and everything else written to stdout (Ray's included) goes to stderr.
    """
    with stdout_to_stderr(as_json):
        summary = job((lambda message: None) if as_json else status)
    if as_json:
        return print_json(summary)
    printer(summary)
