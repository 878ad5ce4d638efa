"""A BigQuery emulator for the tests: `bqemulator` (DuckDB-backed, REST + Storage gRPC)
started as a subprocess on free ports, stopped at the end, like tests/support/mariadb.py.

bqemulator loads DuckDB's `spatial` extension at start and would download it; the
extension comes instead from the pinned `duckdb-extension-spatial` wheel, installed into a
private HOME (DuckDB keeps extensions under ~/.duckdb) before the server starts, so
nothing is fetched at run time.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT = "fg-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install_spatial(python: str, home: Path) -> None:
    """Install the wheel-shipped spatial extension into `home`'s DuckDB folder."""
    script = (
        "import duckdb, duckdb_extension_spatial as ext, pathlib\n"
        "root = pathlib.Path(ext.__file__).parent / 'extensions' / f'v{duckdb.__version__}'\n"
        "duckdb.connect().execute(f\"INSTALL '{root / 'spatial.duckdb_extension'}'\")\n"
    )
    subprocess.run(
        [python, "-c", script],
        check=True,
        capture_output=True,
        env=dict(os.environ, HOME=str(home)),
        timeout=120,
    )


class BigQueryEmulator:
    """A private `bqemulator start` on free ports; `rest_url` and `grpc_target` reach it."""

    def __init__(self, python: str = sys.executable, project: str = PROJECT) -> None:
        self.project = project
        self.dir = Path(tempfile.mkdtemp(prefix="fg-bqemu-"))
        _install_spatial(python, self.dir)
        self.rest_port, self.grpc_port = _free_port(), _free_port()
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                python,
                "-m",
                "bqemulator",
                "start",
                f"--rest-port={self.rest_port}",
                f"--grpc-port={self.grpc_port}",
                f"--project={project}",
                "--ephemeral",
                "--log-level=warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, HOME=str(self.dir)),
        )
        deadline = time.monotonic() + 90
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(keep_log=True)
                raise RuntimeError(f"bqemulator did not start; see {self.dir / 'server.log'}")
            time.sleep(0.2)

    @property
    def rest_url(self) -> str:
        """The REST endpoint (the client's `api_endpoint`)."""
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        """host:port of the Storage Read/Write gRPC API."""
        return f"127.0.0.1:{self.grpc_port}"

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(
                f"{self.rest_url}/bigquery/v2/projects/{self.project}/datasets", timeout=1
            ).close()
        except OSError:
            return False
        return True

    def stop(self, keep_log: bool = False) -> None:
        """Stop the server and remove its folder (unless `keep_log`)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if not keep_log:
            shutil.rmtree(self.dir, ignore_errors=True)
