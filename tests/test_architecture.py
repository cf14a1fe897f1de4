"""The shape of the code holds: no import cycles, services/common imports no stage, and no import runs back up.

Imports are read with `ast`, not by importing anything. Every import counts, at module level
or inside a function: an import deferred into a function still ties the two modules together
(core.py building baselines.py's deciders while baselines.py imports core.py is one module
split in two), and services/common must work without any stage. Imports under
`if TYPE_CHECKING:` never run and do not count.

The layers, lowest first (LAYERS below; a module may import its own layer or any lower one):

0. services.common (and the `services` package itself): the leaf every part shares (errors, enums, images,
   serving). The generated stubs (echo.v1, in protos/) sit under it and import nothing of ours.
1. services.mmad and services.client: libraries that know no stage. mmad is the data model of the questions
   every stage answers (types, loader, scoring); client is the Inspector's public Python client, over the stubs.
2. The stages a stage may reuse: embedding (its backbone is the evidence stage's features and the retrieval
   stage's dimension) and audit (the record and its stores: the gateway writes them, the console reads them).
3. The other stages: retrieval, knowledge, decision, evidence. Each takes its own settings section.
4. The gateway: a stage like the others, whose core calls the stages (over gRPC) and writes the audit.
5. What composes the stages without running them as a product: services.config (the settings tree of
   every section), services.stages (every stage built from that tree: embedded, ingest, Ray Serve, alone),
   services.evaluation (drives a server through the client) and services.console (a web page over the client).
6. deploy: how the stages are placed on Ray Serve.
7. app: the product: the `echo-iad` CLI, `serve`, `demo`, the embedded server and the ingest path.

A stage importing the composition above it (services.config, the CLI, the embedded server) is what this
forbids: the stage could then no longer be built, tested or placed alone. Two more rules keep composition in
its room: no stage imports another stage's server bootstrap (only services.stages builds stages), and only the
one stage-client path (services/common/stage_client.py) and the public client open gRPC channels.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("services", "deploy", "app")

LAYERS: dict[str, int] = {
    "services": 0,
    "services.common": 0,
    "services.mmad": 1,
    "services.client": 1,
    "services.embedding": 2,
    "services.audit": 2,
    "services.retrieval": 3,
    "services.knowledge": 3,
    "services.decision": 3,
    "services.evidence": 3,
    "services.gateway": 4,
    "services.config": 5,
    "services.stages": 5,
    "services.evaluation": 5,
    "services.console": 5,
    "deploy": 6,
    "app": 7,
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking_only(node)
               for stmt in node.body for n in ast.walk(stmt)}  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skipped:
            yield node


def imported_modules(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The known modules that `source` (module `name`) imports; `from pkg import mod` counts as importing pkg.mod."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    out: set[str] = set()
    for node in _imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            prefix = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (prefix, node.module or "") if p)
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]  # `import a.b.c` of a name inside a module: its module
            if target and target != name:
                out.add(target)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    files = {module_name(root, p): p for pkg in PACKAGES if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py")}
    known = set(files)
    return {
        name: imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def common_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports from services.common (or below) of any services module outside it."""
    return sorted(
        f"{src} imports {dst}"
        for src, targets in graph.items()
        if src == "services.common" or src.startswith("services.common.")
        for dst in targets
        if dst.startswith("services")
        and not (dst == "services.common" or dst.startswith("services.common."))
        and dst != "services"
    )


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest LAYERS prefix it falls under (KeyError: a module no row names)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise KeyError(module)


def back_up_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a module in a higher layer than the importer's."""
    return sorted(
        f"{src} -> {dst}" for src, targets in graph.items() for dst in targets if layer_of(dst) > layer_of(src)
    )


STAGES = ("embedding", "retrieval", "knowledge", "decision", "evidence", "audit", "gateway")


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" and parts[1] in STAGES else None


def stage_bootstraps_imported_by_stages(graph: dict[str, set[str]]) -> list[str]:
    """A stage building another stage (importing its server bootstrap): composition belongs above the stages."""
    return sorted(
        f"{src} -> {dst}"
        for src, targets in graph.items()
        for dst in targets
        if stage_of(src) and stage_of(dst) not in (None, stage_of(src)) and dst.endswith(".server")
    )


def test_services_and_deploy_have_no_import_cycles() -> None:
    assert cycles(import_graph(REPO)) == []


def test_services_common_imports_no_stage_even_inside_functions() -> None:
    assert common_violations(import_graph(REPO)) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in import_graph(REPO) if not any(m == p or m.startswith(p + ".") for p in LAYERS)] == []


def test_no_import_runs_back_up_the_layers() -> None:
    assert back_up_imports(import_graph(REPO)) == []


def test_no_stage_builds_another_stage() -> None:
    assert stage_bootstraps_imported_by_stages(import_graph(REPO)) == []


# The modules that open gRPC channels: the one stage-client path, and the Inspector's public client.
CHANNEL_OPENERS = {"services.common.stage_client", "services.client.client"}


def channel_openers(root: Path) -> set[str]:
    """Modules of services/ and app/ that call grpc's insecure_channel or secure_channel themselves."""
    found = set()
    for pkg in ("services", "app"):
        for path in (root / pkg).rglob("*.py"):
            calls = (n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Call))
            if any(isinstance(c.func, ast.Attribute) and c.func.attr.endswith("secure_channel") for c in calls):
                found.add(module_name(root, path))
    return found


def test_every_stage_call_goes_through_the_one_stage_client_path() -> None:
    assert channel_openers(REPO) <= CHANNEL_OPENERS


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_catch_a_cycle_and_a_stage_import_from_common(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "services/__init__.py": "",
            "services/common/__init__.py": "",
            "services/common/util.py": "def f():\n    from services.decision.config import X\n",
            "services/decision/__init__.py": "",
            "services/decision/config.py": "X = 1\n",
            "services/decision/core.py": "def build():\n    from services.decision import baselines\n",
            "services/decision/baselines.py": "from services.decision.core import thing\n",
            "services/decision/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from services.decision import hinted\n",
            "services/decision/hinted.py": "from services.decision import typed\n",
            "deploy/__init__.py": "",
            "deploy/apps.py": "import deploy.deployments\n",
            "deploy/deployments.py": "from deploy.apps import StageArgs\n",
        },
    )
    graph = import_graph(tmp_path)
    assert cycles(graph) == [  # a deferred import closes a cycle too; a TYPE_CHECKING one does not
        ["deploy.apps", "deploy.deployments"],
        ["services.decision.baselines", "services.decision.core"],
    ]
    assert common_violations(graph) == ["services.common.util imports services.decision.config"]


def test_the_layer_check_reports_an_injected_back_up_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "services/__init__.py": "",
            "services/config.py": "from services.decision.config import DecisionSettings\n",
            "services/decision/__init__.py": "",
            "services/decision/config.py": "DecisionSettings = dict\n",
            "services/decision/server.py": "def main():\n    from services.config import load_settings\n",
            "app/__init__.py": "",
            "app/cli.py": "import services.decision.server\n",
        },
    )
    assert back_up_imports(import_graph(tmp_path)) == ["services.decision.server -> services.config"]


def test_the_channel_check_finds_a_stage_client_of_its_own(tmp_path: Path) -> None:
    _write(tmp_path, {"services/knowledge/refiner.py": "import grpc\nch = grpc.aio.insecure_channel('a:1')\n",
                      "app/cli.py": "x = 1\n"})  # fmt: skip
    assert channel_openers(tmp_path) == {"services.knowledge.refiner"}


def test_the_stage_check_reports_a_stage_building_another(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "services/__init__.py": "",
            "services/gateway/__init__.py": "",
            "services/gateway/server.py": "def every():\n    from services.decision.server import build_stage\n",
            "services/decision/__init__.py": "",
            "services/decision/server.py": "",
        },
    )
    graph = import_graph(tmp_path)
    assert stage_bootstraps_imported_by_stages(graph) == ["services.gateway.server -> services.decision.server"]
