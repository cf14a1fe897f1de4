"""loadtests/ is a package run as modules: no sys.path edits, no bench reaching into another's privates, one
place for the composition root, and locust (the [load] extra) imported by nothing the product runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOADTESTS = REPO / "loadtests"
COMPOSITION_ROOT = ("app", "services.gateway.server")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def test_no_load_tool_edits_sys_path() -> None:
    edits = [str(p.relative_to(REPO)) for p in LOADTESTS.rglob("*.py") if "sys.path" in p.read_text(encoding="utf-8")]
    assert edits == []


def test_every_runnable_load_tool_is_a_module_with_a_main() -> None:
    runnable = [*LOADTESTS.glob("bench/*.py"), *LOADTESTS.glob("drills/*.py"), LOADTESTS / "locust" / "run.py"]
    runnable = [p for p in runnable if p.name != "__init__.py"]
    assert len(runnable) >= 20
    missing = [p.name for p in runnable if 'if __name__ == "__main__":' not in p.read_text(encoding="utf-8")]
    assert missing == []


def test_no_load_tool_imports_another_tools_private_names() -> None:
    private = [
        f"{p.relative_to(REPO)}: {mod}.{name}"
        for p in LOADTESTS.rglob("*.py")
        for mod, names in _imports(p)
        if mod.startswith("loadtests.")
        for name in names
        if name.startswith("_")
    ]
    assert private == []


def test_only_the_kit_imports_the_composition_root() -> None:
    """When the composition root moves, one file of the load tools changes."""
    found = {
        str(p.relative_to(REPO))
        for p in LOADTESTS.rglob("*.py")
        for mod, _ in _imports(p)
        if any(mod == root or mod.startswith(f"{root}.") for root in COMPOSITION_ROOT)
    }
    assert found <= {"loadtests/kit/app.py"}
    app = (LOADTESTS / "kit" / "app.py").read_text(encoding="utf-8")
    assert all(mod in app for mod in ("app.background", "services.gateway.server", "app.cli"))


def test_nothing_the_product_runs_imports_locust() -> None:
    """locust is in the [load] extra only: services/ and deploy/ must work without it."""
    found = sorted(
        str(p.relative_to(REPO))
        for pkg in ("services", "deploy")
        for p in (REPO / pkg).rglob("*.py")
        for mod, _ in _imports(p)
        if mod == "locust" or mod.startswith("locust.")
    )
    assert found == []


def test_a_benchmark_runs_as_a_module_and_answers_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.bench.planner", "--help"], cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")
