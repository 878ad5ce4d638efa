"""A real headless browser for the page tests: Debian's `chromium`, installed when missing.

`ensure_chromium()` finds chromium, or installs it (`apt-get update` then
`apt-get install -y chromium`, as root) and skips the test with the reason when that is
impossible. `Browser.load(url)` returns the rendered DOM (`--dump-dom`) and every console
message the page produced (`--enable-logging=stderr`: console calls and
Content-Security-Policy violations, such as a blocked fetch, appear as `CONSOLE` lines);
`Browser.screenshot(url, path)` saves a PNG.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import apt

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)$")
_NAMES = ("chromium", "chromium-browser")


def _find() -> str | None:
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    """The chromium executable; installs Debian's package when missing, else skips."""
    found = _find()
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it needs root (apt-get)")
    for args in (["update", "-q"], ["install", "-y", "-q", "chromium"]):
        done = apt.run(args)
        if done.returncode != 0:
            pytest.skip(
                f"chromium could not be installed (apt-get {' '.join(args)}): {done.stderr[-400:]}"
            )
    found = _find()
    if not found:
        pytest.skip("apt-get installed chromium but no chromium executable is on PATH")
    return found


@dataclass
class Page:
    """What the browser rendered: the DOM after load, and the console messages."""

    dom: str
    console: list[str]


class Browser:
    """Runs chromium once per call, each time with a fresh profile folder."""

    def __init__(self, executable: str, timeout_s: float = 90.0) -> None:
        self.executable = executable
        self.timeout_s = timeout_s

    def _run(self, url: str, *extra: str) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="fg-chromium-") as profile:
            return subprocess.run(
                [self.executable, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                env={**os.environ, "HOME": profile},
            )

    def load(self, url: str) -> Page:
        """The rendered DOM and console messages of `url`."""
        done = self._run(url, "--enable-logging=stderr", "--v=0", "--dump-dom")
        if not done.stdout.strip():
            raise AssertionError(f"chromium rendered nothing for {url}: {done.stderr[-1500:]}")
        console = [m.group(1) for m in map(_CONSOLE.search, done.stderr.splitlines()) if m]
        return Page(done.stdout, console)

    def screenshot(self, url: str, path: Path, width: int = 1280, height: int = 3000) -> Path:
        """Save a PNG of `url` at `path`."""
        self._run(url, f"--screenshot={path}", f"--window-size={width},{height}")
        if not path.is_file() or path.stat().st_size == 0:
            raise AssertionError(f"chromium wrote no screenshot of {url}")
        return path
