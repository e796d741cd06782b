"""`--json` output: stdout carries the JSON alone, whatever Ray writes meanwhile."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from medray import console


def test_stdout_to_stderr_moves_file_descriptor_writes_and_restores(capfd):
    with console.stdout_to_stderr():
        os.write(1, b"raw fd write\n")  # what Ray's C++ core and forwarded worker logs do
    console.print_json({"ok": 1})
    captured = capfd.readouterr()
    assert json.loads(captured.out) == {"ok": 1}
    assert "raw fd write" in captured.err


def test_stdout_to_stderr_also_covers_child_processes():
    code = ("import subprocess, sys\nfrom medray import console\n"
            "with console.stdout_to_stderr():\n"
            "    print('from the driver')\n"
            "    subprocess.run([sys.executable, '-c', 'print(\"from a worker\")'])\n"
            "console.print_json([1, 2])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == [1, 2]
    assert "from a worker" in proc.stderr and "from the driver" in proc.stderr


def test_disabled_leaves_stdout_alone(capfd):
    with console.stdout_to_stderr(enabled=False):
        print("table output", flush=True)
    assert capfd.readouterr().out == "table output\n"
