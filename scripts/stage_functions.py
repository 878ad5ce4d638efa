"""Stage each Cloud Function as a self-contained folder ready to zip and deploy.

Cloud Functions upload only the function's own folder, so the shared `forecastguard`
package must travel inside it. For every `functions/<name>/` this script writes
`build/functions/<name>/`:

- the function's files (`main.py`, ...), without caches and tests;
- `forecastguard/`: the library's `pyproject.toml` and package, an installable local
  project next to `main.py` (the installed copy wins over this folder on import, because a
  folder without `__init__.py` is only a namespace-package candidate);
- `constraints.txt`: the repository's pins, so the cloud build resolves the same versions;
- `requirements.txt`: the function's own requirements, with any reference to the
  library replaced by `./forecastguard` (by path) and `-c constraints.txt` on top.

Staging is deterministic (same sources, same bytes), so Terraform's zip hash, which names
the uploaded object, changes only when the code does.

    python scripts/stage_functions.py              # every folder under functions/
    python scripts/stage_functions.py health       # just one
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_DIR = "forecastguard"
PACKAGE = "forecastguard"

_IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".pytest_cache", "tests", "build", "dist"
)
# A requirement line that installs the library some other way: by name, or by a path
# to the shared/ folder (editable or not).
_LIBRARY_LINE = re.compile(
    rf"^\s*(-e\s+|--editable\s+)?(\S*[/\\])?(shared|{PACKAGE})[/\\]?(\s*[@=<>~!\[;].*)?\s*$",
    re.IGNORECASE,
)


class StagingError(RuntimeError):
    """A function folder cannot be staged; the message says which and why."""


def library_requirement(line: str) -> bool:
    """True when a requirements line refers to the forecastguard library."""
    return bool(_LIBRARY_LINE.match(line.split(" #", 1)[0]))


def rewrite_requirements(text: str, *, constraints: bool) -> str:
    """The staged requirements.txt: the function's lines, the library by path."""
    kept = [line for line in text.splitlines() if not library_requirement(line)]
    while kept and not kept[-1].strip():
        kept.pop()
    head = ["# Staged by scripts/stage_functions.py: forecastguard is vendored by path."]
    if constraints:
        head.append("-c constraints.txt")
    return "\n".join([*head, *kept, f"./{VENDOR_DIR}", ""])


def stage_function(
    source: Path,
    out_dir: Path,
    *,
    shared_dir: Path = ROOT / "shared",
    constraints: Path | None = ROOT / "requirements" / "constraints.txt",
) -> Path:
    """Stage the function folder `source` into `out_dir/<name>/` and return that folder."""
    if not (source / "main.py").is_file():
        raise StagingError(f"{source} has no main.py: not a function folder")
    package = shared_dir / PACKAGE
    if not (shared_dir / "pyproject.toml").is_file() or not package.is_dir():
        raise StagingError(f"{shared_dir} does not hold the {PACKAGE} project")

    dest = out_dir / source.name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=_IGNORE)

    vendor = dest / VENDOR_DIR
    if vendor.exists():
        raise StagingError(f"{source} already holds {VENDOR_DIR}/: stage from a clean folder")
    vendor.mkdir(parents=True)
    shutil.copy2(shared_dir / "pyproject.toml", vendor / "pyproject.toml")
    shutil.copytree(package, vendor / PACKAGE, ignore=_IGNORE)

    if constraints is not None:
        shutil.copy2(constraints, dest / "constraints.txt")
    own = source / "requirements.txt"
    text = own.read_text(encoding="utf-8") if own.is_file() else ""
    (dest / "requirements.txt").write_text(
        rewrite_requirements(text, constraints=constraints is not None), encoding="utf-8"
    )
    return dest


def function_folders(functions_dir: Path, names: Sequence[str] = ()) -> list[Path]:
    """The function folders to stage: the named ones, or every folder with a main.py."""
    if names:
        return [functions_dir / name for name in names]
    return sorted(p for p in functions_dir.iterdir() if (p / "main.py").is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: stage the named functions (default: all) and print their folders."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="function folder names (default: all)")
    parser.add_argument("--functions-dir", type=Path, default=ROOT / "functions")
    parser.add_argument("--shared-dir", type=Path, default=ROOT / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "functions")
    parser.add_argument(
        "--constraints",
        type=Path,
        default=ROOT / "requirements" / "constraints.txt",
        help="pins copied next to requirements.txt ('' to leave them out)",
    )
    args = parser.parse_args(argv)
    constraints = args.constraints if str(args.constraints) not in ("", ".") else None

    folders = function_folders(args.functions_dir, args.names)
    if not folders:
        print(f"no function folders under {args.functions_dir}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for folder in folders:
            staged = stage_function(
                folder, args.out, shared_dir=args.shared_dir, constraints=constraints
            )
            print(staged)
    except StagingError as exc:
        print(f"stage_functions: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
