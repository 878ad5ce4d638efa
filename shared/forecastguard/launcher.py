"""Starting the trainer: a Cloud Run Job execution (`run_job` with overrides), or a local
subprocess running the same entry point (`TRAINER_JOB=local`).

Both launchers take the request id and the trainer's environment (`trainer_env`) and
return what identifies the run. A failure is either a `TransientLaunchError` (worth
another try: the caller lets Pub/Sub redeliver) or a `PermanentLaunchError` (another
try would fail the same way: the caller records it).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from forecastguard.config import ConfigError, Settings
from forecastguard.logs import get_logger

log = get_logger(__name__)

JOB_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/jobs/[^/]+$")
DEFAULT_COMMAND = (sys.executable, "-m", "trainer", "--mode", "train")
# The local trainer's environment is an allow-list (issue 28), not the function's whole
# environment: the settings it reads, its own flags' variables, and what a Python process
# needs to run. The health endpoint's credentials are withheld: the trainer never serves
# /model/health. SMTP_PASSWORD is passed: the trainer sends the report email itself.
WITHHELD_SETTINGS = frozenset(
    {"HEALTH_API_TOKEN", "HEALTH_AUDIENCE", "HEALTH_ALLOWED_CALLERS", "ALLOW_UNAUTHENTICATED"}
)
TRAINER_VARIABLES = frozenset(
    {
        # trainer.run.cli's flags and trainer.run.options.RequestInfo (see `trainer_env`)
        "TRAINER_MODE", "RUN_ID", "TRIALS", "EPOCHS", "TUNING_TIMEOUT_S", "TRAIN_CONFIG",
        "SEARCH_UNITS", "DISPARITY_WEIGHT", "SHAP_PRODUCTS", "REQUEST_ID", "REASON",
        "HEALTH_CHECK_ID", "WINDOW_START", "WINDOW_END",
        # the process
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "VIRTUAL_ENV", "MPLBACKEND", "MPLCONFIGDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE", "CUDA_VISIBLE_DEVICES", "STORAGE_EMULATOR_HOST",
        "PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
    }
)  # fmt: skip
TRAINER_PREFIXES = (
    "TRAINER_", "PROMOTION_", "OPTUNA_", "CLOUD_RUN_", "PYTHON", "LC_", "TF_", "OMP_",
    "MKL_", "OPENBLAS_", "KERAS_", "CLOUDSDK_",
)  # fmt: skip


def trainer_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of `environ` the local trainer subprocess may see (the allow-list above)."""
    settings = set(Settings.env_names().values()) - WITHHELD_SETTINGS
    return {
        name: value
        for name, value in environ.items()
        if name not in WITHHELD_SETTINGS
        and (name in settings or name in TRAINER_VARIABLES or name.startswith(TRAINER_PREFIXES))
    }


# gRPC status codes (by name) that another try will not change.
PERMANENT_CODES = frozenset(
    {"PERMISSION_DENIED", "NOT_FOUND", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "UNAUTHENTICATED"}
)


class LaunchError(RuntimeError):
    """The trainer could not be started."""


class TransientLaunchError(LaunchError):
    """Starting failed for now (unavailable, deadline exceeded, ...): try again later."""


class PermanentLaunchError(LaunchError):
    """Starting cannot succeed as configured (permission denied, job not found, ...)."""


@dataclass(frozen=True)
class Launched:
    """A started run: the Cloud Run execution (or `local:pid=N`) and the local log file."""

    execution_name: str | None
    log_path: str | None = None
    pid: int | None = None
    task_pids: tuple[int, ...] = ()  # local runs of several tasks: every task's process


@dataclass(frozen=True)
class Liveness:
    """Whether a run is alive: True, False (ended or gone) or None (cannot tell now)."""

    alive: bool | None
    reason: str


class Launcher(Protocol):
    """Starts one trainer run for a request, with these extra environment variables."""

    def launch(self, request_id: str, env: Mapping[str, str]) -> Launched:
        """Start the run; raise `TransientLaunchError` or `PermanentLaunchError`."""
        ...

    def liveness(self, execution_name: str | None) -> Liveness:
        """Is the run `execution_name` (what `launch` returned) still alive?"""
        ...


LOCAL_PID = re.compile(r"^local:pid=(\d+)$")


def local_liveness(execution_name: str | None) -> Liveness:
    """A local run (`local:pid=N`) is alive while its process exists and is no zombie."""
    found = LOCAL_PID.match(execution_name or "")
    if not found:
        return Liveness(None, f"not a local run: {execution_name!r}")
    pid = int(found.group(1))
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return Liveness(False, f"process {pid} is gone")
        except (OSError, IndexError):
            return Liveness(None, f"cannot read the state of process {pid}")
        if state in ("Z", "X"):
            return Liveness(False, f"process {pid} has exited")
        return Liveness(True, f"process {pid} is running")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Liveness(False, f"process {pid} is gone")
    except PermissionError:
        pass
    return Liveness(True, f"process {pid} is running")


def trainer_env(
    request_id: str,
    reason: str | None,
    health_check_id: str | None,
    window_start: date | None,
    window_end: date | None,
) -> dict[str, str]:
    """The environment that tells the trainer which request it serves (all strings)."""
    return {
        "REQUEST_ID": request_id,
        "REASON": reason or "",
        "HEALTH_CHECK_ID": health_check_id or "",
        "WINDOW_START": window_start.isoformat() if window_start else "",
        "WINDOW_END": window_end.isoformat() if window_end else "",
    }


class CloudRunLauncher:
    """Runs the Cloud Run Job `job` with environment overrides.

    The `run_v2.JobsClient` is created on first use (it needs credentials), once, unless
    one is given. UNAVAILABLE and DEADLINE_EXCEEDED (and other non-permanent errors) are
    tried `attempts` times with exponential backoff before a `TransientLaunchError`.
    """

    def __init__(
        self,
        job: str,
        *,
        client: Any = None,
        executions_client: Any = None,
        attempts: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 8.0,
        call_timeout_s: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not JOB_NAME.match(job):
            raise ConfigError(f"TRAINER_JOB must be projects/P/locations/L/jobs/J, got {job!r}")
        self.job = job
        self._client = client
        self._executions_client = executions_client
        self._client_lock = threading.Lock()
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.call_timeout_s = call_timeout_s
        self._sleep = sleep

    @property
    def client(self) -> Any:
        """The Cloud Run Admin API client (created lazily, once)."""
        with self._client_lock:
            if self._client is None:
                from google.cloud import run_v2

                self._client = run_v2.JobsClient()
            return self._client

    @property
    def executions_client(self) -> Any:
        """The Cloud Run Admin API's executions client (created lazily, once)."""
        with self._client_lock:
            if self._executions_client is None:
                from google.cloud import run_v2

                self._executions_client = run_v2.ExecutionsClient()
            return self._executions_client

    def liveness(self, execution_name: str | None) -> Liveness:
        """The execution's state from the Admin API: ended (with how) or still running.

        An execution that is not found is gone; an API error means "cannot tell now"
        (the run keeps the trainer until TRAINER_TIMEOUT_S, as before).
        """
        from google.api_core import exceptions
        from google.auth.exceptions import GoogleAuthError

        if not execution_name or "/executions/" not in execution_name:
            return Liveness(None, f"no execution to ask about: {execution_name!r}")
        try:
            execution = self.executions_client.get_execution(
                name=execution_name, timeout=self.call_timeout_s, retry=None
            )
        except exceptions.NotFound:
            return Liveness(False, f"execution {execution_name} not found")
        except (exceptions.GoogleAPICallError, GoogleAuthError) as exc:
            log.warning(
                "cannot ask Cloud Run whether the run is alive",
                extra={"execution_name": execution_name, "error": str(exc)[:300]},
            )
            return Liveness(None, f"get_execution failed: {_code_name(exc)}")
        pb = type(execution).pb(execution)
        ended = pb.HasField("completion_time") or (
            execution.running_count == 0
            and (execution.failed_count or execution.cancelled_count or execution.succeeded_count)
        )
        if not ended:
            return Liveness(True, f"execution {execution_name} is running")
        detail = "; ".join(f"{c.type_}: {c.message}" for c in execution.conditions if c.message)[
            :500
        ]
        return Liveness(
            False,
            f"execution {execution_name} ended (succeeded {execution.succeeded_count}, "
            f"failed {execution.failed_count}, cancelled {execution.cancelled_count})"
            + (f": {detail}" if detail else ""),
        )

    def request(self, env: Mapping[str, str]) -> Any:
        """The `RunJobRequest`: this job, with `env` merged into its container's env."""
        from google.cloud import run_v2

        override = run_v2.RunJobRequest.Overrides.ContainerOverride(
            env=[run_v2.EnvVar(name=k, value=v) for k, v in env.items()]
        )
        return run_v2.RunJobRequest(
            name=self.job, overrides=run_v2.RunJobRequest.Overrides(container_overrides=[override])
        )

    def launch(self, request_id: str, env: Mapping[str, str]) -> Launched:
        """Call `run_job`; return the execution's name without waiting for it to finish."""
        from google.api_core import exceptions
        from google.auth.exceptions import GoogleAuthError

        request = self.request(env)
        try:
            client = self.client
        except GoogleAuthError as exc:
            raise PermanentLaunchError(f"no credentials for the Cloud Run API: {exc}") from exc
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                operation = client.run_job(request=request, timeout=self.call_timeout_s, retry=None)
            except exceptions.GoogleAPICallError as exc:
                code = _code_name(exc)
                text = f"run_job {self.job}: {code}: {exc.message}"
                if code in PERMANENT_CODES:
                    raise PermanentLaunchError(text) from exc
                if attempt == self.attempts:
                    raise TransientLaunchError(f"{text} (after {attempt} attempts)") from exc
                log.warning(
                    "run_job failed, retrying",
                    extra={"request_id": request_id, "code": code, "attempt": attempt},
                )
                self._sleep(min(delay, self.max_backoff_s) * random.uniform(0.5, 1.0))
                delay *= 2
                continue
            return Launched(execution_name=_execution_name(operation))
        raise AssertionError("unreachable")


class LocalLauncher:
    """Runs the trainer as a detached subprocess, its output in a log file per run.

    With `task_count` > 1 (TRAINER_TASK_COUNT; issue 26: the partitions of a catalogue
    shared by a job's tasks) it starts one subprocess per task, as Cloud Run starts the
    job's tasks: CLOUD_RUN_TASK_INDEX, CLOUD_RUN_TASK_COUNT and one CLOUD_RUN_EXECUTION
    for all of them, a log file each. The run is task 0's process (it gathers the
    partitions and finishes the run): its pid and log are the run's.
    """

    def __init__(
        self,
        command: Sequence[str] = DEFAULT_COMMAND,
        *,
        log_dir: str | Path,
        base_env: Mapping[str, str],
        task_count: int = 1,
    ) -> None:
        if not command:
            raise ConfigError("TRAINER_COMMAND is empty")
        if task_count < 1:
            raise ConfigError(f"TRAINER_TASK_COUNT must be >= 1, got {task_count}")
        self.command = tuple(command)
        self.log_dir = Path(log_dir)
        self.base_env = dict(base_env)
        self.task_count = task_count

    def _start(self, log_path: Path, env: Mapping[str, str]) -> subprocess.Popen:
        try:
            with open(log_path, "ab") as out:
                process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**self.base_env, **env},
                    start_new_session=True,
                    close_fds=True,
                )
        except (FileNotFoundError, PermissionError) as exc:
            raise PermanentLaunchError(f"cannot run {self.command[0]!r}: {exc}") from exc
        except OSError as exc:
            raise TransientLaunchError(f"cannot start {self.command[0]!r}: {exc}") from exc
        # Reap the child when it ends, so a long-lived function process keeps no zombie.
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
        return process

    def launch(self, request_id: str, env: Mapping[str, str]) -> Launched:
        """Start the command (once per task) in its own session; return task 0's pid and
        log file (and every task's pid)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", request_id)[:80]
        log_path = self.log_dir / f"trainer-{stamp}-{safe_id}.log"
        if self.task_count == 1:
            process = self._start(log_path, env)
            return Launched(
                execution_name=f"local:pid={process.pid}", log_path=str(log_path), pid=process.pid
            )
        execution = f"local-{stamp}-{uuid.uuid4().hex[:6]}"
        processes = []
        for task in range(self.task_count):
            task_env = {
                "CLOUD_RUN_EXECUTION": execution,
                "CLOUD_RUN_TASK_INDEX": str(task),
                "CLOUD_RUN_TASK_COUNT": str(self.task_count),
                **env,
            }
            path = log_path if task == 0 else log_path.with_suffix(f".task{task}.log")
            processes.append(self._start(path, task_env))
        first = processes[0]
        return Launched(
            execution_name=f"local:pid={first.pid}",
            log_path=str(log_path),
            pid=first.pid,
            task_pids=tuple(p.pid for p in processes),
        )

    def liveness(self, execution_name: str | None) -> Liveness:
        """Whether the local process of the run still exists."""
        return local_liveness(execution_name)


def make_launcher(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    jobs_client: Any = None,
    executions_client: Any = None,
) -> CloudRunLauncher | LocalLauncher:
    """The launcher `settings.trainer_job` asks for.

    `environ` is the environment the local subprocess inherits (the caller's boundary),
    filtered by `trainer_base_env`; DATABASE_URL and ARTIFACT_URI from `settings` are
    passed through explicitly.
    """
    job = settings.trainer_job
    if not job:
        raise ConfigError(
            "missing setting(s): TRAINER_JOB (projects/P/locations/L/jobs/J or local)"
        )
    if job != "local":
        return CloudRunLauncher(job, client=jobs_client, executions_client=executions_client)
    base_env = trainer_base_env(environ)
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("ARTIFACT_URI", settings.artifact_uri),
    ):
        if value:
            base_env[name] = value
    log_dir = settings.trainer_log_dir or str(
        Path(tempfile.gettempdir()) / "forecastguard" / "trainer-logs"
    )
    raw_tasks = (environ.get("TRAINER_TASK_COUNT") or "1").strip()
    try:
        task_count = int(raw_tasks)
    except ValueError:
        raise ConfigError(f"TRAINER_TASK_COUNT must be an integer, got {raw_tasks!r}") from None
    return LocalLauncher(
        settings.trainer_command or DEFAULT_COMMAND,
        log_dir=log_dir,
        base_env=base_env,
        task_count=task_count,
    )


def _code_name(exc: Any) -> str:
    code = getattr(exc, "grpc_status_code", None)
    return code.name if code is not None else type(exc).__name__


def _execution_name(operation: Any) -> str | None:
    """The execution's name from the operation's metadata (an Execution), if present."""
    metadata = getattr(operation, "metadata", None)
    name = getattr(metadata, "name", None)
    if name:
        return str(name)
    raw = getattr(operation, "operation", None)
    return getattr(raw, "name", None) or None
