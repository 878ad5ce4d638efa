"""The local stand-ins for Google Cloud: functions served by functions-framework on
localhost, and an SMTP sink that keeps each email as an .eml file.

Used by `forecastguard serve` (the functions, for calls by hand) and `forecastguard demo`.
Every child process runs in its own process group and is stopped, with its children,
when the stack closes — including on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from forecastguard.logs import get_logger

log = get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class FunctionSpec:
    """One Cloud Function entry point to serve locally."""

    name: str
    folder: str
    target: str
    signature_type: str  # "http" or "cloudevent"


FUNCTIONS = (
    FunctionSpec("health_http", "health", "health_http", "http"),
    FunctionSpec("health_pubsub", "health", "health_pubsub", "cloudevent"),
    FunctionSpec("train_trigger", "train_trigger", "on_retrain_request", "cloudevent"),
)


@dataclass
class ServedFunction:
    """A running functions-framework process."""

    spec: FunctionSpec
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@dataclass
class LocalStack:
    """Serves the functions on free localhost ports with a shared environment."""

    env: Mapping[str, str]
    log_dir: Path
    functions_dir: Path = FUNCTIONS_DIR
    ports: dict[str, int] = field(default_factory=dict)
    served: dict[str, ServedFunction] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Ports are fixed before anything starts, so each function's environment can
        # name the others (the health function pushes to train_trigger's URL).
        self.ports = {s.name: self.ports.get(s.name) or free_port() for s in FUNCTIONS}

    def url(self, name: str) -> str:
        """The local URL of a function, e.g. http://127.0.0.1:8081/."""
        return f"http://127.0.0.1:{self.ports[name]}/"

    def start(self, names: tuple[str, ...] | None = None, timeout_s: float = 60.0) -> None:
        """Start the functions (all by default) and wait until each answers."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ports = self.ports
        for spec in FUNCTIONS:
            if names and spec.name not in names:
                continue
            source = self.functions_dir / spec.folder / "main.py"
            if not source.is_file():
                raise FileNotFoundError(f"function source not found: {source}")
            log_path = self.log_dir / f"{spec.name}.log"
            cmd = [
                sys.executable,
                "-m",
                "functions_framework",
                f"--target={spec.target}",
                f"--source={source}",
                f"--signature-type={spec.signature_type}",
                "--host=127.0.0.1",
                f"--port={ports[spec.name]}",
            ]
            out = open(log_path, "ab")  # noqa: SIM115 - the child owns it
            process = subprocess.Popen(
                cmd,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            out.close()
            self.served[spec.name] = ServedFunction(spec, ports[spec.name], process, log_path)
            log.info("function started", extra={"function": spec.name, "port": ports[spec.name]})
        for fn in self.served.values():
            _wait_until_listening(fn, timeout_s)

    def stop(self) -> None:
        """Stop every served function and its children."""
        for fn in self.served.values():
            stop_process_group(fn.process)
        self.served.clear()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_until_listening(fn: ServedFunction, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fn.process.poll() is not None:
            tail = fn.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"function {fn.spec.name} exited at start:\n{tail}")
        with contextlib.suppress(requests.RequestException):
            requests.get(fn.url, timeout=1)
            return
        time.sleep(0.2)
    raise TimeoutError(f"function {fn.spec.name} did not answer on {fn.url} in {timeout_s} s")


def stop_process_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process's group, then SIGKILL what is left after `grace_s`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class EmlSink:
    """A local SMTP server (aiosmtpd) that writes every message it receives to an .eml file."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{len(list(self.folder.glob('*.eml'))) + 1}.eml"
        (self.folder / name).write_bytes(envelope.original_content or envelope.content)
        log.info("email received", extra={"file": name, "to": list(envelope.rcpt_tos)})
        return "250 Message accepted for delivery"

    def __enter__(self) -> EmlSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


@contextlib.contextmanager
def interrupts_as_exit() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so `finally` blocks stop the children."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def pages_server(
    settings: Any,
    engine: Any,
    host: str = "127.0.0.1",
    port: int = 8083,
    allowed_hosts: tuple[str, ...] = (),
) -> Any:
    """The health pages (history, reports) as a `PagesServer`, not started yet.

    On a loopback address the pages are open to this machine; on any other address every
    request needs the credentials `/model/health` takes (`Authenticator.from_settings`).
    Either way a request must name this server in its Host header: a loopback name, the
    bound address or one of `allowed_hosts` (DNS rebinding). Reports are looked up where
    each check recorded them, then under `ARTIFACT_URI`.
    """
    from forecastguard.auth import Authenticator
    from forecastguard.report.app import PagesServer, allowed_hosts_for, create_app, is_loopback
    from forecastguard.storage import open_store

    authenticator = None if is_loopback(host) else Authenticator.from_settings(settings)
    store = open_store(settings.artifact_uri) if settings.artifact_uri else None
    app = create_app(
        engine,
        store=store,
        authenticator=authenticator,
        allowed_hosts=allowed_hosts_for(host, allowed_hosts),
    )
    return PagesServer(app, host, port)
