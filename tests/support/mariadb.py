"""A MariaDB server for the tests: the one on 127.0.0.1:3306 when it answers, otherwise a
throwaway server installed (apt-get) and started on a free port, stopped at the end.

`FG_TEST_MYSQL_URL` (a server URL without database, e.g. mysql+pymysql://root@host:3306)
points the tests at another server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql

from tests.support import apt

DEFAULT = ("127.0.0.1", 3306, "root", "")


def _answers(host: str, port: int, user: str, password: str) -> bool:
    try:
        pymysql.connect(
            host=host, port=port, user=user, password=password, connect_timeout=3
        ).close()
    except pymysql.err.MySQLError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )


def _install() -> None:
    for args in (["update", "-qq"], ["install", "-y", "-qq", "mariadb-server"]):
        done = apt.run(args)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get {' '.join(args)} failed: {done.stderr[-400:]}")


class ThrowawayServer:
    """A private mariadbd on a free port with its data in a temporary folder."""

    def __init__(self) -> None:
        if not (_binary("mariadbd") and _binary("mariadb-install-db")):
            _install()
        self.dir = Path(tempfile.mkdtemp(prefix="fg-mariadb-"))
        self.port = _free_port()
        data, sock = self.dir / "data", self.dir / "mysqld.sock"
        subprocess.run(
            [
                _binary("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                _binary("mariadbd"),
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={sock}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
                f"--pid-file={self.dir / 'mysqld.pid'}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not _answers("127.0.0.1", self.port, "root", ""):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"throwaway MariaDB did not start; see {self.dir / 'server.log'}"
                )
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def server_url() -> tuple[str, ThrowawayServer | None]:
    """A server URL (no database) and the throwaway server to stop, if one was started."""
    if os.environ.get("FG_TEST_MYSQL_URL"):
        return os.environ["FG_TEST_MYSQL_URL"].rstrip("/"), None
    host, port, user, password = DEFAULT
    if _answers(host, port, user, password):
        return f"mysql+pymysql://{user}@{host}:{port}", None
    server = ThrowawayServer()
    return f"mysql+pymysql://root@127.0.0.1:{server.port}", server
