"""The health function stays light: importing it never loads TensorFlow (nor scipy.stats,
which the check itself no longer imports either: issue 23)."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.health.conftest import SOURCE


def test_function_import_does_not_load_tensorflow() -> None:
    code = (
        "import sys; "
        f"sys.path[:0] = [{str(SOURCE.parent)!r}, {str(SOURCE.parents[2] / 'shared')!r}]; "
        "import main; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'scipy.stats') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
