"""The codebase stays ruff-clean (lint and format), so every change is held to the same style."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ruff_lint_and_format_are_clean() -> None:
    ruff = shutil.which("ruff")
    assert ruff, "ruff is part of the [dev] extra"
    lint = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout
