"""`apt-get` for the tests, one at a time.

`make test` runs the suite in several worker processes (pytest-xdist). On a machine
without MariaDB or chromium, two workers may each install their package at the same
moment, and the second `apt-get` fails on dpkg's lock at once ("Could not get lock").
`run` holds an exclusive lock on one file for the whole command, so the tests' installs
take turns; apt's own `DPkg::Lock::Timeout` also waits for an apt run outside the tests.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path

LOCK_FILE = Path(tempfile.gettempdir()) / "forecastguard-tests-apt.lock"
APT_LOCK_WAIT_S = 600


def run(args: list[str], *, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`apt-get <args>` (non-interactive), waiting for any other test's apt-get first;
    returns the finished process (the caller decides what a failure means)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}", *args]
    with open(LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
