"""The docs site builds strictly, its generated pages cover the code, and the README stays short.

CI runs the README's test command, so this is where `mkdocs build --strict` runs in CI.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from services.config import EchoSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 250


def page_text(site: Path, page: str) -> str:
    """A built page's visible text: tags stripped, entities decoded."""
    raw = (site / page / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def settings_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf settings key, dotted, walked independently of the docs hook."""
    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += settings_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_has_at_most_250_lines() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_docs_site_builds_strictly_with_every_nav_page(site: Path) -> None:
    for page in ("design", "configuration", "protocol", "security", "cluster", "evidence", "evaluation"):
        assert (site / page / "index.html").is_file(), page


def test_the_configuration_reference_names_every_settings_field(site: Path) -> None:
    text = page_text(site, "configuration")
    keys = settings_keys(EchoSettings)
    assert {"evidence.false_alarm_rate", "server.tls.cert_file", "gateway.decision.stall_probe_ms"} <= set(keys)
    missing = [key for key in keys if key not in text]
    assert not missing, f"configuration reference lacks {missing}"


def test_the_configuration_reference_shows_a_parent_sections_own_defaults(hooks: ModuleType) -> None:
    """The gateway builds its decision endpoint with retries=0; the page must say 0, not the class's 2."""
    page = hooks.configuration()
    row = next(line for line in page.splitlines() if line.startswith("| `gateway.decision.retries`"))
    assert "| `0` |" in row


def test_the_protocol_page_lists_every_rpc_and_message(site: Path) -> None:
    from echo.v1 import decision_pb2, embedding_pb2, evidence_pb2, inspector_pb2, knowledge_pb2, retrieval_pb2

    text = page_text(site, "protocol")
    for module in (inspector_pb2, embedding_pb2, retrieval_pb2, knowledge_pb2, evidence_pb2, decision_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            assert service.name in text
            for method in service.methods:
                assert method.name in text and method.input_type.name in text and method.output_type.name in text
    assert "Answer one question about one product image." in text  # a comment from inspector.proto


def test_every_results_file_is_one_json_object_shown_on_the_measurements_page(site: Path) -> None:
    files = sorted((DOCS / "results").glob("*.json"))
    assert files, "docs/results/ holds no JSON line"
    text = page_text(site, "measurements")
    for path in files:
        lines = path.read_text().strip().splitlines()
        assert len(lines) == 1, f"{path.name}: one JSON line expected, got {len(lines)}"
        data = json.loads(lines[0])
        assert isinstance(data, dict), f"{path.name}: a JSON object expected"
        assert lines[0] in text, f"{path.name} is not on the measurements page"


def test_a_result_with_keys_never_seen_before_renders_every_leaf(
    hooks: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = {
        "bench": "brand_new",
        "rows": {"a|b": {"x": 1.5, "list": [1, 2]}, "objs": [{"k": "v"}]},
        "per_site": {"north": {"p50": 3, "p99": 9}, "south": {"p50": 4, "p99": 12}},
        "ok": True,
    }
    (tmp_path / "brand_new.json").write_text(json.dumps(line) + "\n")
    (tmp_path / "brand_new.md").write_text("Measured on a test machine.\n")
    monkeypatch.setattr(hooks, "RESULTS_DIR", tmp_path)
    page = hooks.measurements()
    assert "## brand_new" in page and "Measured on a test machine." in page
    for key, value in (("rows.a\\|b.x", "1.5"), ("rows.a\\|b.list", "[1, 2]"), ("rows.objs[0].k", "v"), ("ok", "true")):
        assert f"| `{key}` | {value} |" in page
    assert "| | `p50` | `p99` |" in page and "| `north` | 3 | 9 |" in page and "| `south` | 4 | 12 |" in page


def test_every_design_citation_in_the_code_names_a_section_of_docs_design() -> None:
    old_citation = re.compile(r"\bDESIGN" + " §")  # built so this file does not match itself
    design = (DOCS / "design.md").read_text()
    sections = set(re.findall(r"^## (\d)\. ", design, flags=re.MULTILINE))
    assert sections == {"1", "2", "3", "4", "5", "6"}
    cited = set()
    for folder in ("services", "deploy", "loadtests", "tests", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert not old_citation.search(text), f"{path}: cite docs/design.md §N"
            cited |= set(re.findall(r"docs/design\.md §(\d)", text))
    assert cited and cited <= sections
