"""The README's claims hold: it stays a short front door, every link and file it names
exists, every setting, command and make target it mentions is real."""

from __future__ import annotations

import re
from pathlib import Path

from click import Group

from forecastguard.cli import main
from forecastguard.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_BYTES = 12 * 1024


def _text() -> str:
    return README.read_text(encoding="utf-8")


def test_the_readme_is_a_short_front_door() -> None:
    assert len(README.read_bytes()) <= MAX_BYTES
    for heading in (
        "## The chain",
        "## Two commands",
        "## What the demo shows",
        "## Configuration",
        "## Documentation",
    ):
        assert heading in _text()


def test_every_relative_link_resolves() -> None:
    for page in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_readme_links_every_docs_page() -> None:
    linked = set(re.findall(r"\(docs/([\w-]+\.md)\)", _text()))
    assert {p.name for p in DOCS} <= linked


def test_configuration_tables_name_real_settings() -> None:
    known = set(Settings.env_names().values())
    for page in (README, ROOT / "docs" / "configuration.md"):
        rows = [line for line in page.read_text("utf-8").splitlines() if line.startswith("| `")]
        assert rows, f"{page.name} has no settings table"
        for row in rows:
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]):
                assert name in known, f"{page.name}: {name} is not a setting"


def test_commands_and_make_targets_exist() -> None:
    text = _text()
    assert isinstance(main, Group)
    code = " ".join(re.findall(r"```.*?```|`[^`\n]+`", text, re.S))
    for command in set(re.findall(r"forecastguard ([a-z][a-z-]+)", code)):
        assert command in main.commands, f"forecastguard {command} does not exist"
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"make ([a-z][a-z-]+)", code)):
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target} does not exist"


def test_the_paths_the_readme_names_exist() -> None:
    for path in ("shared/forecastguard/config.py", "requirements/constraints.txt"):
        assert path in _text() and (ROOT / path).exists()
    for folder in re.findall(r"^([a-z_/]+/)\s", _text(), re.M):
        assert (ROOT / folder).is_dir(), f"the layout names a missing folder {folder}"
