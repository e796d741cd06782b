"""No credential is committed: every tracked file (manifests, configs, code, docs) is scanned for the usual shapes.

The values a run handles are checked separately, in tests/jobs/test_submit.py,
by scanning logs, outputs and MLflow for the session's own test credentials.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PATTERNS = {
    "AWS access key id": re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(rb"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "AWS secret key assignment": re.compile(
        rb"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    "password in a URL": re.compile(rb"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s@'\"]{6,})@"),
    "Ray token assignment": re.compile(rb"RAY_AUTH_TOKEN\s*[:=]\s*['\"]?[0-9a-f]{32,}"),
}
# AWS's own documentation examples, which tests plant on purpose: not credentials.
DOCUMENTED_EXAMPLES = (b"AKIAIOSFODNN7EXAMPLE", b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
# Placeholders documentation may show inside a URL: not secrets.
PLACEHOLDER = re.compile(rb"^(?:PASSWORD|password|\.\.\.|\$\{?[A-Z_]+\}?|\$\([^)]*\)|<[^>]+>|xxx+|\*+)$")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the tracked files")
    return [REPO / name for name in out.decode().split("\0") if name]


def find_secrets(data: bytes) -> list[str]:
    found = []
    for name, pattern in PATTERNS.items():
        for match in pattern.finditer(data):
            if name == "password in a URL" and PLACEHOLDER.match(match.group(1)):
                continue
            if any(example in match.group(0) for example in DOCUMENTED_EXAMPLES):
                continue
            found.append(name)
    return found


def test_the_patterns_catch_planted_credentials_and_pass_placeholders():
    # Assembled from parts so that this file does not match its own scan.
    assert find_secrets(b"key: AKIA" + b"Q3EGRT5WJZ2XLM7P") == ["AWS access key id"]
    assert find_secrets(b"aws_secret_access_key = " + b"9hT2kLq/8vXw+3nRb6YzP1mC4dF7gJ0sA5eU2iKo") == [
        "AWS secret key assignment"]
    assert find_secrets(b"postgresql://mlflow:" + b"s3cr3t-pw@db:5432/mlflow") == ["password in a URL"]
    assert find_secrets(b"RAY_AUTH_TOKEN" + b"=" + b"ab" * 32) == ["Ray token assignment"]
    assert find_secrets(b"-----BEGIN OPENSSH " + b"PRIVATE KEY-----") == ["private key"]
    for safe in (b"postgresql://mlflow:PASSWORD@DBHOST:5432/mlflow", b"RAY_AUTH_TOKEN=$(ray get-auth-token)",
                 b"s3://medray-data/met/tree.parquet", b"http://mlflow.medray.svc:5000",
                 b"aws_access_key_id AKIAIOSFODNN7EXAMPLE"):
        assert find_secrets(safe) == [], safe


def test_no_tracked_file_holds_a_credential():
    files = _tracked_files()
    assert any(p.match("k8s/base/*.yaml") for p in files) and any(p.name == "aws.yaml" for p in files)
    hits = []
    for path in files:
        if path.is_file() and path.stat().st_size < 5_000_000:
            hits += [f"{path.relative_to(REPO)}: {name}" for name in find_secrets(path.read_bytes())]
    assert hits == []
