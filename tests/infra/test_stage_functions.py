"""The staging script: each function folder becomes self-contained and installable.

The fast tests stage a small function made in a temporary folder; the slow ones stage the
real functions, install each from its own requirements.txt into a clean virtualenv (pip,
this machine's package index, no system site-packages) and serve it with
functions-framework.
"""

from __future__ import annotations

import filecmp
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from forecastguard.db.engine import make_engine
from scripts.stage_functions import (
    StagingError,
    function_folders,
    library_requirement,
    main,
    rewrite_requirements,
    stage_function,
)
from tests.integration.health.synthetic import frames, synthetic_window, write

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "line",
    [
        "./forecastguard",
        "forecastguard",
        "forecastguard==0.1.0",
        "-e ../../shared",
        "../../shared/",
        "--editable ../../shared",
        "file:../../shared",
        "forecastguard @ file:///src/shared",
        "./forecastguard  # the library",
    ],
)
def test_library_lines_are_recognised(line: str) -> None:
    assert library_requirement(line)


@pytest.mark.parametrize(
    "line",
    ["pandas==3.1.1", "shared-memory-dict==0.7", "forecastguard-extras", "# forecastguard", ""],
)
def test_other_lines_are_kept(line: str) -> None:
    assert not library_requirement(line)


def test_rewrite_lists_the_library_by_path_once() -> None:
    text = "# pins\n./forecastguard\nflask==3.1.3\n-e ../../shared\nnumpy==2.4.6\n\n"
    out = rewrite_requirements(text, constraints=True).splitlines()
    assert out[1] == "-c constraints.txt"
    assert out[-1] == "./forecastguard"
    assert out.count("./forecastguard") == 1
    assert "-e ../../shared" not in out
    assert {"flask==3.1.3", "numpy==2.4.6", "# pins"} <= set(out)
    assert "-c constraints.txt" not in rewrite_requirements(text, constraints=False)


def _toy_function(root: Path) -> Path:
    fn = root / "functions" / "toy"
    (fn / "__pycache__").mkdir(parents=True)
    (fn / "tests").mkdir()
    (fn / "main.py").write_text("def hello(request):\n    return 'hi'\n")
    (fn / "helpers.py").write_text("X = 1\n")
    (fn / "requirements.txt").write_text("./forecastguard\nfunctions-framework==3.10.2\n")
    (fn / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (fn / "tests" / "test_main.py").write_text("")
    return fn


def test_stage_makes_a_self_contained_folder(tmp_path: Path) -> None:
    fn = _toy_function(tmp_path)
    staged = stage_function(fn, tmp_path / "out")
    assert staged == tmp_path / "out" / "toy"
    assert (staged / "main.py").is_file() and (staged / "helpers.py").is_file()
    assert not (staged / "__pycache__").exists() and not (staged / "tests").exists()
    lib = staged / "forecastguard"
    assert (lib / "pyproject.toml").read_bytes() == (ROOT / "shared/pyproject.toml").read_bytes()
    assert (lib / "forecastguard" / "__init__.py").is_file()
    assert (lib / "forecastguard" / "py.typed").is_file()
    assert not list(lib.rglob("__pycache__")), "caches must not be vendored"
    assert not list(lib.rglob("*.egg-info"))
    assert (staged / "constraints.txt").read_bytes() == (
        ROOT / "requirements/constraints.txt"
    ).read_bytes()
    requirements = (staged / "requirements.txt").read_text().splitlines()
    assert requirements[-1] == "./forecastguard"
    assert "functions-framework==3.10.2" in requirements


def test_staging_is_deterministic(tmp_path: Path) -> None:
    fn = _toy_function(tmp_path)
    first = stage_function(fn, tmp_path / "a")
    second = stage_function(fn, tmp_path / "b")
    cmp = filecmp.dircmp(first, second)

    def same(c: filecmp.dircmp) -> bool:
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        if c.left_only or c.right_only or mismatch or errors:
            return False
        return all(same(sub) for sub in c.subdirs.values())

    assert same(cmp)


def test_restaging_replaces_the_old_folder(tmp_path: Path) -> None:
    fn = _toy_function(tmp_path)
    staged = stage_function(fn, tmp_path / "out")
    (staged / "stale.py").write_text("")
    staged = stage_function(fn, tmp_path / "out")
    assert not (staged / "stale.py").exists()


def test_a_folder_without_main_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(StagingError, match=r"no main\.py"):
        stage_function(tmp_path / "empty", tmp_path / "out")


def test_cli_stages_every_function(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _toy_function(tmp_path)
    (tmp_path / "functions" / "not_a_function").mkdir()
    out = tmp_path / "out"
    assert main(["--functions-dir", str(tmp_path / "functions"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "toy")
    assert [p.name for p in function_folders(tmp_path / "functions")] == ["toy"]
    assert main(["--functions-dir", str(tmp_path / "functions"), "--out", str(out), "nope"]) == 1


# --- the real functions, installed and served --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_env() -> dict[str, str]:
    """This process's environment without PYTHON* variables: a caller's PYTHONPATH (a
    bench running a worktree, say) would put its checkout before the staged install."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def _clean_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def _serve(python: Path, source: Path, target: str, signature: str, env: dict[str, str]):
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(python),
            "-m",
            "functions_framework",
            "--source",
            str(source / "main.py"),
            "--target",
            target,
            "--signature-type",
            signature,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=source,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


JSON = {"Content-Type": "application/json"}


def _request(
    url: str, *, data: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_for(url: str, proc: subprocess.Popen, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"functions-framework exited: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("functions-framework did not start")


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


REAL_FUNCTIONS = ("health", "train_trigger")
AS_OF = date(2026, 5, 30)


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory):
    """Stage every real function and start installing each into its own clean venv.

    The installs run side by side (they mostly wait on the package index); each test
    waits for its own. Bytecode compilation is skipped to keep them quick.
    """
    started = {}
    for folder in REAL_FUNCTIONS:
        if not (ROOT / "functions" / folder / "main.py").is_file():
            continue
        base = tmp_path_factory.mktemp(folder)
        staged = stage_function(ROOT / "functions" / folder, base / "staged")
        python = _clean_venv(base / "venv")
        pip = [str(python), "-m", "pip", "install", "--quiet", "--no-input", "--no-compile"]
        proc = subprocess.Popen(
            [*pip, "-r", "requirements.txt"],
            cwd=staged,
            env=_own_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started[folder] = (base, staged, python, proc)
    yield started
    for *_, proc in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _installed(installs, folder: str) -> tuple[Path, Path, Path]:
    """Wait for one function's install; check it used the staged copy of forecastguard."""
    if folder not in installs:
        pytest.fail(f"functions/{folder}/main.py is missing")
    base, staged, python, proc = installs[folder]
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    where = subprocess.run(
        [str(python), "-c", "import forecastguard; print(forecastguard.__file__)"],
        cwd=base,
        env=_own_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert str(base / "venv") in where, f"forecastguard imported from {where}"
    return base, staged, python


@pytest.mark.slow
def test_staged_functions_install_cleanly_and_serve_the_local_chain(
    installs, tmp_path: Path
) -> None:
    """health (own venv) finds a window whose demand tripled unhealthy and posts a retrain
    request to train_trigger (own venv), which records it and starts the (stand-in) trainer.
    (An empty window is an alert about missing data, not a reason to retrain.)"""
    _, health_src, health_py = _installed(installs, "health")
    _, trigger_src, trigger_py = _installed(installs, "train_trigger")
    db = tmp_path / "fg.db"
    token = "a-test-token-of-enough-length"
    base_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{db}",
        "LOG_LEVEL": "WARNING",
    }
    forecastguard_cli = health_py.parent / "forecastguard"
    subprocess.run([str(forecastguard_cli), "db", "upgrade"], env=base_env, check=True)
    engine = make_engine(base_env["DATABASE_URL"])
    try:  # every product sells 3x what the model forecasts: RMSE far above the threshold
        window = synthetic_window(
            12, AS_OF, seed=3, level_median=60.0, drift_share=1.0, drift_factor=3.0
        )
        write(engine, *frames(window))
    finally:
        engine.dispose()

    trigger_env = {
        **base_env,
        "TRAINER_JOB": "local",
        "TRAINER_COMMAND": f"{trigger_py} -c pass",
        "TRAINER_LOG_DIR": str(tmp_path / "trainer-logs"),
    }
    trigger, trigger_url = _serve(
        trigger_py, trigger_src, "on_retrain_request", "cloudevent", trigger_env
    )
    health_env = {
        **base_env,
        "HEALTH_API_TOKEN": token,
        "METRICS_SINK": str(tmp_path / "metrics.jsonl"),
        "RETRAIN_TOPIC": trigger_url + "/",
    }
    health, health_url = _serve(health_py, health_src, "health_http", "http", health_env)
    logs = ""
    try:
        _wait_for(trigger_url + "/", trigger)
        _wait_for(health_url + "/", health)
        # Not a CloudEvent and not a Pub/Sub push: the framework refuses it.
        assert _request(trigger_url + "/", data=b"{}", headers=JSON)[0] == 400
        assert _request(health_url + "/model/health")[0] == 401
        status, body = _request(
            f"{health_url}/model/health?as_of={AS_OF.isoformat()}",
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        logs = _stop(health) + _stop(trigger)
    assert status == 200, f"{status} {body}\n{logs}"
    result = json.loads(body)
    assert result["healthy"] is False, result
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"metric": "custom.googleapis.com/forecastguard/healthy", "value": 0.0}.items() <= (
        metrics[0].items()
    ), metrics[0]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, reason FROM retrain_requests").fetchall()
    assert len(rows) == 1 and rows[0][0] != "rejected", f"{rows}\n{logs}"
