"""Read terraform/ with python-hcl2 into plain, quote-free Python structures.

python-hcl2 keeps HCL's quotes: a literal string comes back as '"text"', an expression as
'${...}', and block labels quoted. `load()` strips the quotes from literals and labels and
drops the parser's markers, so tests compare against ordinary strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "terraform"

_MARKERS = {"__is_block__", "__comments__", "__start_line__", "__end_line__"}


def unquote(value: Any) -> Any:
    """Strip python-hcl2's quotes from a literal string; leave expressions as they are."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def normalize(value: Any) -> Any:
    """Recursively unquote keys and literals and drop the parser's markers."""
    if isinstance(value, dict):
        return {unquote(k): normalize(v) for k, v in value.items() if k not in _MARKERS}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return unquote(value)


@dataclass
class Terraform:
    """The blocks of a Terraform folder, merged across its files."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ephemeral: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        """One resource's body; KeyError names what is missing."""
        try:
            return self.resources[rtype][name]
        except KeyError:
            raise KeyError(f"terraform/ has no resource {rtype}.{name}") from None

    def local_map(self, name: str) -> dict[str, Any]:
        """A local that must be a literal map (not an expression)."""
        value = self.locals[name]
        if not isinstance(value, dict):
            raise AssertionError(f"local.{name} must be a literal map, got {value!r}")
        return value

    def env_map(self, expression: Any) -> dict[str, Any]:
        """Resolve an environment map: a literal, `local.x` or `merge(local.a, local.b, ...)`."""
        if isinstance(expression, dict):
            return expression
        text = str(expression)
        if m := re.fullmatch(r"\$\{local\.(\w+)\}", text):
            return self.local_map(m.group(1))
        if m := re.fullmatch(r"\$\{merge\(((?:local\.\w+\s*,\s*)*local\.\w+)\)\}", text):
            merged: dict[str, Any] = {}
            for name in re.findall(r"local\.(\w+)", m.group(1)):
                merged.update(self.local_map(name))
            return merged
        raise AssertionError(f"cannot resolve environment map {text!r}: use locals and merge()")


def load(directory: Path = TERRAFORM_DIR) -> Terraform:
    """Parse every *.tf file of `directory`."""
    tf = Terraform()
    for path in sorted(directory.glob("*.tf")):
        text = path.read_text(encoding="utf-8")
        tf.texts[path.name] = text
        parsed = hcl2.loads(text)
        for block in parsed.get("resource", []):
            for rtype, by_name in normalize(block).items():
                for name, body in by_name.items():
                    assert name not in tf.resources.get(rtype, {}), f"{rtype}.{name} twice"
                    tf.resources.setdefault(rtype, {})[name] = body
        for block in parsed.get("data", []):
            for rtype, by_name in normalize(block).items():
                tf.data.setdefault(rtype, {}).update(by_name)
        for block in parsed.get("ephemeral", []):
            for rtype, by_name in normalize(block).items():
                tf.ephemeral.setdefault(rtype, {}).update(by_name)
        for block in parsed.get("variable", []):
            tf.variables.update(normalize(block))
        for block in parsed.get("output", []):
            tf.outputs.update(normalize(block))
        for block in parsed.get("locals", []):
            tf.locals.update(normalize(block))
        tf.terraform.extend(normalize(parsed.get("terraform", [])))
    return tf


def walk_strings(value: Any) -> list[str]:
    """Every string inside a nested structure (for reference scans)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *walk_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in walk_strings(v)]
    return [value] if isinstance(value, str) else []
