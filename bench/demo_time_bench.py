"""The demo's (and the trainer tests') CPU cost at several commits, interleaved (issue 26's
goal "the demo and `make test` stay within 10 % of their time today").

Each side is a git worktree of one commit. Its code is run by this project's venv with
`PYTHONPATH=<tree>/shared:<tree>/jobs/trainer`, which puts the tree's packages before
the venv's editable install of /work/main (each side's `forecastguard.__file__` and
`trainer.__file__` are printed by a child first and stored in the results, so a side that
silently ran the wrong tree is visible). The functions the demo serves come from the
tree too (`local.FUNCTIONS_DIR` is relative to the package), and the trainers the demo's
train_trigger starts inherit `PYTHONPATH` through the launcher's allow-list (`PYTHON*`).

What is measured, per run: CPU seconds (user + sys) of the WHOLE process tree — this
process makes itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`), so a trainer
or function server whose parent never waited for it is re-parented here and reaped, and
its CPU is counted; the figure is the growth of `getrusage(RUSAGE_CHILDREN)` once every
descendant is reaped. Also the wall time (only meaningful on a quiet machine), the load
average before and after, the demo's own step times and how many trainings it ran
(`logs/trainer-*.log` plus the train_trigger's runs), and the exit code.

`OMP_WAIT_POLICY=PASSIVE` is set on every side (LightGBM's OpenMP threads spin while
waiting for a core under load, which inflates CPU time by whatever else runs). Run the
whole bench under `nice -n 19` on a shared machine.

    nice -n 19 .venv/bin/python bench/demo_time_bench.py \
        --side filed=/tmp/oldB_filed --side pre26=/tmp/oldB_pre26 --side head=/tmp/oldB_head \
        --repeats 2 --out bench/results/demo_time.json

`--what trainer` measures one training alone, as the demo's first one runs (the same
synthetic 30 products x 2 years, TRIALS 1, EPOCHS 6, a fresh SQLite database made by the
side's own `db upgrade` and `synth`, not measured): the trainer is what issue 26
changed, while the demo's story (how many trainings it runs) changed with other issues.

`--what tests` runs `pytest -q -p no:cacheprovider` over the trainer's test folders that
exist in each tree (tests/unit/trainer*, tests/integration/trainer*) instead of the demo,
from the tree's root (`--test-path` names other files or globs), and records
passed/failed counts from pytest's last line. The tests' MariaDB server is not a child of
this process: its CPU is not counted on either side. `--pytest-args label=ARGS` gives one
side's pytest more options, e.g. the workers its Makefile's `make test` runs with
(`--pytest-args "head=-n auto --maxprocesses 4 --dist loadfile"`), so each side runs
its suite as its own `make test` does.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
TEST_GLOBS = ("tests/unit/trainer*", "tests/integration/trainer*")


def parse_side(text: str) -> tuple[str, Path]:
    """`label=path` of a side's worktree; the path must hold shared/ and jobs/trainer/."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"a side is label=path, got {text!r}")
    tree = Path(path).resolve()
    for sub in ("shared/forecastguard", "jobs/trainer/trainer"):
        if not (tree / sub).is_dir():
            raise argparse.ArgumentTypeError(f"{tree} has no {sub}/")
    return label, tree


def parse_side_args(text: str) -> tuple[str, list[str]]:
    """`label=ARGS`: more pytest options for one side, split as a shell would."""
    label, sep, rest = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"pytest args are label=ARGS, got {text!r}")
    try:
        return label, shlex.split(rest)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"pytest args for {label!r}: {exc}") from exc


def side_env(tree: Path) -> dict[str, str]:
    """The environment a side runs in: the tree's packages first, OpenMP waiting passively."""
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{tree / 'shared'}:{tree / 'jobs' / 'trainer'}"
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.pop("PYTHONHOME", None)
    return env


def import_paths(tree: Path) -> dict[str, str]:
    """Where a child with this side's environment imports forecastguard and trainer from."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, forecastguard, trainer; "
            "print(json.dumps({'forecastguard': forecastguard.__file__, "
            "'trainer': trainer.__file__}))",
        ],
        env=side_env(tree),
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    paths = json.loads(out.stdout.strip().splitlines()[-1])
    for name, path in paths.items():
        if not Path(path).resolve().is_relative_to(tree):
            raise RuntimeError(f"{name} imported from {path}, not from {tree}")
    return paths


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process, so their CPU is counted."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap_all(timeout_s: float) -> int:
    """Wait for every remaining descendant (re-parented here); returns how many."""
    reaped = 0
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid:
            reaped += 1
            continue
        if time.monotonic() > deadline:
            raise TimeoutError("descendants still running after the run ended")
        time.sleep(0.5)


def children_cpu() -> tuple[float, float]:
    """(user, sys) CPU seconds of every reaped descendant so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime, ru.ru_stime


TRAINER_SALES = ("--products", "30", "--start", "2024-11-01", "--end", "2026-10-31", "--seed", "7")


def trainer_setup(tree: Path, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """A fresh database with the demo's first training's data (30 synthetic products x 2
    years, seed 7; `forecastguard synth` is unchanged across the sides), made by the
    side's own code and not measured; returns the command and environment of one default
    training as the demo's first one runs it (TRIALS 1, EPOCHS 6)."""
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "artifacts").mkdir(parents=True)
    env = side_env(tree)
    env["DATABASE_URL"] = f"sqlite:///{workdir / 'forecastguard.db'}"
    cli = [sys.executable, "-m", "forecastguard.cli"]
    for args in (["db", "upgrade"], ["synth", *TRAINER_SALES]):
        subprocess.run([*cli, *args], env=env, cwd=workdir, check=True, capture_output=True)
    reap_all(timeout_s=60)
    env |= {
        "ARTIFACT_URI": (workdir / "artifacts").as_uri(),
        "TRIALS": "1",
        "EPOCHS": "6",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    return [sys.executable, "-m", "trainer", "--mode", "train", "--run-id", "initial"], env


def demo_facts(workdir: Path) -> dict[str, Any]:
    """The demo's summary (step times, who serves) and how many trainings it ran."""
    facts: dict[str, Any] = {}
    summary = workdir / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        facts["steps"] = data.get("steps")
        facts["serving"] = data.get("serving")
        facts["serving_initial"] = data.get("serving_initial")
    logs = workdir / "logs"
    facts["trainer_logs"] = sorted(p.name for p in logs.glob("*trainer*")) if logs.is_dir() else []
    return facts


def pytest_counts(text: str) -> dict[str, int]:
    """passed/failed/skipped/error counts from pytest's summary line."""
    last = [line for line in text.splitlines() if " in " in line and "passed" in line]
    counts: dict[str, int] = {}
    if last:
        for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", last[-1]):
            counts[word] = int(n)
    return counts


def run_once(
    what: str,
    label: str,
    tree: Path,
    workroot: Path,
    index: int,
    demo_args: list[str],
    test_paths: list[str] | None = None,
    pytest_args: list[str] | None = None,
) -> dict[str, Any]:
    """One measured run of the demo (or the trainer tests) on one side."""
    if what == "demo":
        workdir = workroot / f"{label}-{index}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        cmd = [sys.executable, "-m", "forecastguard.cli", "demo", "--workdir", str(workdir)]
        cmd += demo_args
        cwd = workroot
        env = side_env(tree)
    elif what == "trainer":
        workdir = workroot / f"{label}-trainer-{index}"
        cmd, env = trainer_setup(tree, workdir)
        cwd = workdir
    else:
        workdir = workroot / f"{label}-tests-{index}"
        workdir.mkdir(parents=True, exist_ok=True)
        globs = test_paths or TEST_GLOBS
        folders = sorted(str(p.relative_to(tree)) for g in globs for p in tree.glob(g))
        if not folders:
            raise ValueError(f"no test path of {list(globs)} in {tree}")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        cmd += [*(pytest_args or []), *folders]
        cwd = tree
        env = side_env(tree)
    log_path = workdir.parent / f"{workdir.name}.log"
    load_before = os.getloadavg()
    user0, sys0 = children_cpu()
    start = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=out)
        rc = proc.wait()
    wall = time.monotonic() - start
    stragglers = reap_all(timeout_s=120)
    user1, sys1 = children_cpu()
    row: dict[str, Any] = {
        "side": label,
        "index": index,
        "returncode": rc,
        "cpu_user_s": round(user1 - user0, 2),
        "cpu_sys_s": round(sys1 - sys0, 2),
        "cpu_s": round(user1 - user0 + sys1 - sys0, 2),
        "wall_s": round(wall, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "stragglers_reaped": stragglers,
        "log": str(log_path),
    }
    if what == "demo":
        row.update(demo_facts(workdir))
    else:
        row["pytest"] = pytest_counts(log_path.read_text(errors="replace"))
    return row


def summarise(rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Per side: the runs' CPU and wall seconds, their means and the ratios of the means
    to the first side's (`ratio_to_<first>` is CPU's, `wall_ratio_to_<first>` wall's)."""
    out: dict[str, Any] = {}
    for label in labels:
        ok = [r for r in rows if r["side"] == label and r["returncode"] == 0]
        cpu, wall = [r["cpu_s"] for r in ok], [r["wall_s"] for r in ok]
        out[label] = {
            "cpu_s": cpu,
            "mean_cpu_s": round(sum(cpu) / len(cpu), 1) if cpu else None,
            "wall_s": wall,
            "mean_wall_s": round(sum(wall) / len(wall), 1) if wall else None,
        }
    first = labels[0]
    for label in labels:
        for key, name in (("mean_cpu_s", "ratio"), ("mean_wall_s", "wall_ratio")):
            mean, base = out[label][key], out[first][key]
            out[label][f"{name}_to_{first}"] = round(mean / base, 3) if mean and base else None
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every side `--repeats` times, interleaved (the order rotates each round)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=parse_side, action="append", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--what", choices=("demo", "trainer", "tests"), default="demo")
    parser.add_argument(
        "--test-path",
        action="append",
        help="with --what tests: a test file or glob instead of the trainer's folders",
    )
    parser.add_argument(
        "--pytest-args",
        type=parse_side_args,
        action="append",
        default=[],
        help="with --what tests: label=ARGS, more pytest options for that side",
    )
    parser.add_argument("--workroot", type=Path, default=Path("/tmp/demo_time_bench"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("demo_args", nargs="*", help="extra `forecastguard demo` options")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    labels = [label for label, _ in args.side]
    if len(set(labels)) != len(labels):
        parser.error("side labels must differ")
    extra = dict(args.pytest_args)
    if set(extra) - set(labels):
        parser.error(f"--pytest-args names no side: {sorted(set(extra) - set(labels))}")
    become_subreaper()
    args.workroot.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "what": args.what,
        "python": sys.executable,
        "nice": os.nice(0),
        "omp_wait_policy": "PASSIVE",
        "demo_args": args.demo_args,
        "sides": {},
        "runs": [],
    }
    for label, tree in args.side:
        head = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        result["sides"][label] = {"tree": str(tree), "commit": head, **import_paths(tree)}
        if args.what == "tests":
            result["sides"][label]["pytest_args"] = extra.get(label, [])
    sides = list(args.side)
    for i in range(args.repeats):
        order = sides[i % len(sides) :] + sides[: i % len(sides)]
        for label, tree in order:
            row = run_once(
                args.what,
                label,
                tree,
                args.workroot,
                i,
                args.demo_args,
                args.test_path,
                extra.get(label),
            )
            result["runs"].append(row)
            print(
                json.dumps(
                    {
                        k: row[k]
                        for k in ("side", "index", "returncode", "cpu_s", "wall_s", "load_after")
                    }
                ),
                flush=True,
            )
            result["summary"] = summarise(result["runs"], labels)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as exc:  # pragma: no cover - a prctl or spawn failure, said plainly
        print(f"demo_time_bench: {exc}", file=sys.stderr)
        sys.exit(errno.EIO)
