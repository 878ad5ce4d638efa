"""`make test` runs the suite in parallel workers; what that needs from the tests.

The installs the tests make on a bare machine (MariaDB, chromium) take turns, and the
Makefile's test targets distribute by file, so a module's fixtures are built once.
"""

from __future__ import annotations

import re
import stat
import sys
import threading
from pathlib import Path

from tests.support import apt

ROOT = Path(__file__).resolve().parents[2]

# A stand-in apt-get: fails, as dpkg's lock does, when another one is running.
FAKE_APT = """#!{python}
import os, sys, time
marker = {marker!r}
try:
    fd = os.open(marker, os.O_CREAT | os.O_EXCL)
except FileExistsError:
    print("E: Could not get lock /var/lib/dpkg/lock-frontend", file=sys.stderr)
    sys.exit(100)
time.sleep(0.3)
os.close(fd)
os.unlink(marker)
with open({calls!r}, "a") as out:
    out.write(" ".join(sys.argv[1:]) + "\\n")
"""


def test_concurrent_installs_take_turns(tmp_path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    calls = tmp_path / "calls.txt"
    fake.write_text(
        FAKE_APT.format(python=sys.executable, marker=str(tmp_path / "busy"), calls=str(calls))
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(apt, "LOCK_FILE", tmp_path / "apt.lock")

    codes: list[int] = []

    def install(package: str) -> None:
        codes.append(apt.run(["install", "-y", package]).returncode)

    threads = [
        threading.Thread(target=install, args=(pkg,))
        for pkg in ("mariadb-server", "chromium", "mariadb-server")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert codes == [0, 0, 0]
    wait = f"-o DPkg::Lock::Timeout={apt.APT_LOCK_WAIT_S}"
    assert sorted(calls.read_text().splitlines()) == [
        f"{wait} install -y {p}" for p in ("chromium", "mariadb-server", "mariadb-server")
    ]


def test_the_makefile_runs_the_suite_in_workers_a_file_each() -> None:
    makefile = (ROOT / "Makefile").read_text()
    workers = re.search(r"^PYTEST_WORKERS := (.*)$", makefile, re.M)
    assert workers, "the Makefile names its pytest-xdist options in PYTEST_WORKERS"
    assert "--dist loadfile" in workers.group(1)
    test_recipe = re.search(r"^test:.*\n\t(.*)$", makefile, re.M)
    assert test_recipe and "$(PYTEST_WORKERS)" in test_recipe.group(1)
