"""MkDocs hook: the pages that are generated, never written by hand (mkdocs.yml `hooks:`).

A page holds a marker line; at build time it is replaced by text made from the source of truth:

- `<!-- generated: configuration -->`: every settings field of `services.config.EchoSettings` (key, type,
  default, description), walked from the pydantic models themselves;
- `<!-- generated: protocol -->`: every service, RPC and message of the `echo.v1` contracts, from the
  compiled descriptors, with the comments of the `.proto` files beside the stubs;
- `<!-- generated: measurements -->`: every `docs/results/<name>.json` (one benchmark's JSON line, as
  printed), flattened into a table, with the optional `docs/results/<name>.md` saying where and when it ran.

So the reference cannot go stale: a new field, RPC or result shows up at the next `mkdocs build`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

RESULTS_DIR = Path(__file__).parent / "results"
MARKER = re.compile(r"^<!-- generated: (\w+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each generated marker on a page with its text (MkDocs event)."""
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)


# --- shared ---------------------------------------------------------------------------------------


def cell(text: object) -> str:
    """One Markdown table cell: pipes escaped, newlines folded."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def code(text: object) -> str:
    """Inline code that survives a table cell (backticks inside are doubled around)."""
    text = cell(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# --- configuration reference ----------------------------------------------------------------------


def type_name(annotation: Any) -> str:
    """A short, readable type: `'a' | 'b'` for a Literal, `list[int]`, `bool`."""
    if get_origin(annotation) is Literal:
        return " \\| ".join(repr(a) for a in get_args(annotation))
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def settings_rows(model: type[BaseModel], value: BaseModel, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(section, row, nested) walk: yields a heading for each section and one table row per leaf field.

    Defaults are read from `value`, the section as its parent builds it, so a parent's default factory
    (e.g. the decision stage's own timeout share) shows, not the class's.
    """
    leaves, sections = [], []
    for name, field in model.model_fields.items():
        current = getattr(value, name)
        if isinstance(current, BaseModel):
            sections.append((name, field, current))
            continue
        leaves.append(
            f"| {code(prefix + name)} | {type_name(field.annotation)} | {code(json.dumps(current))} "
            f"| {cell(field.description or '')} |"
        )
    if leaves:
        yield prefix.rstrip(".") or "top level", (model.__doc__ or "").strip(), "\n".join(leaves)
    for name, _field, current in sections:
        yield from settings_rows(type(current), current, prefix + name + ".")


def configuration() -> str:
    """Every settings section as a table, then what the `paper` protocol preset changes."""
    from services.common.protocol import PRESETS
    from services.config import EchoSettings

    defaults = EchoSettings.model_construct()  # the class defaults, without reading the environment
    out = []
    for section, doc, rows in settings_rows(EchoSettings, defaults):
        out.append(f"## `{section}`\n" if section != "top level" else "## Top level\n")
        if doc and section != "top level":
            out.append(doc.splitlines()[0] + "\n")
        out.append("| key | type | default | description |\n| --- | --- | --- | --- |")
        out.append(rows + "\n")
    out.append("## What a protocol preset changes\n")
    out.append(
        "A preset sits between these defaults and your file (`services/common/protocol.py`); "
        "`echo-iad eval` selects `paper`, `echo-iad serve` runs `product`.\n"
    )
    out.append("| protocol | key | value |\n| --- | --- | --- |")
    for protocol, overlay in PRESETS.items():
        flat = dict(flatten(overlay)) or {"(nothing)": "the defaults above"}
        out.extend(f"| `{protocol}` | {code(k)} | {code(json.dumps(v))} |" for k, v in flat.items())
    return "\n".join(out) + "\n"


# --- protocol table -------------------------------------------------------------------------------

PROTO_MODULES = ("common", "inspector", "embedding", "retrieval", "knowledge", "evidence", "decision")
SCALARS = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    8: "bool",
    9: "string",
    12: "bytes",
    13: "uint32",
}
DECLARATION = re.compile(r"^\s*(message|enum|service|oneof)\s+(\w+)\s*\{")
MEMBER = re.compile(r"^\s*(?:rpc\s+(\w+)\s*\(|(?:[\w.<>, ]+?\s+)?(\w+)\s*=\s*-?\d+)")


def proto_comments(text: str) -> dict[str, str]:
    """Comments of a .proto file by dotted path: the file, each message/enum/service, field, value and rpc.

    A comment is the `//` lines just above a declaration, or the `//` after it on its line.
    """
    comments: dict[str, str] = {}
    scopes: list[str] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            pending.append(stripped.lstrip("/").strip())
            continue
        body, _, trailing = line.partition("//")
        if stripped.startswith("package ") and pending:
            comments[""] = " ".join(pending)
        declared = DECLARATION.match(body)
        member = MEMBER.match(body) if not declared else None
        if declared:
            kind, name = declared.groups()
            if kind == "oneof":  # its fields belong to the enclosing message
                scopes.append("")
            else:
                scopes.append(name)
                comments[".".join(s for s in scopes if s)] = " ".join(pending)
        elif member and scopes:
            name = member.group(1) or member.group(2)
            text_ = " ".join([*pending, trailing.strip()]).strip()
            comments[".".join([*[s for s in scopes if s], name])] = text_
        pending = []
        scopes.extend([""] * (body.count("{") - (1 if declared else 0)))
        for _ in range(body.count("}")):
            if scopes:
                scopes.pop()
    return comments


def field_type(field: Any) -> str:
    """`string`, `repeated Image`, `map<string, float>` from a field descriptor."""
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        key, value = message.fields_by_name["key"], message.fields_by_name["value"]
        return f"map<{field_type(key)}, {field_type(value)}>"
    name = message.name if message is not None else field.enum_type.name if field.enum_type else None
    name = name or SCALARS.get(field.type, f"type {field.type}")
    repeated = getattr(field, "is_repeated", None)
    repeated = repeated if repeated is not None else field.label == field.LABEL_REPEATED
    return f"repeated {name}" if repeated else name


def protocol() -> str:
    """Each service's RPCs (takes, returns, what it does), then every message and enum with its fields."""
    import importlib

    services, messages = [], []
    for module_name in PROTO_MODULES:
        module = importlib.import_module(f"echo.v1.{module_name}_pb2")
        source = Path(module.__file__).with_name(f"{module_name}.proto")
        notes = proto_comments(source.read_text())
        descriptor = module.DESCRIPTOR
        for service in descriptor.services_by_name.values():
            services.append(f"### {service.name}\n")
            services.append(f"`echo.v1.{service.name}` ({code(source.name)}): {notes.get('', '')}\n")
            services.append("| RPC | takes | returns | what it does |\n| --- | --- | --- | --- |")
            for method in service.methods:
                takes, gives = method.input_type.name, method.output_type.name
                stream = " (stream)" if method.server_streaming else ""
                services.append(
                    f"| `{method.name}` | [{takes}](#{takes.lower()}) | [{gives}](#{gives.lower()}){stream} "
                    f"| {cell(notes.get(f'{service.name}.{method.name}', ''))} |"
                )
            services.append("")
        if descriptor.message_types_by_name or descriptor.enum_types_by_name:
            messages.append(f"### {source.name}\n")
        for message in descriptor.message_types_by_name.values():
            messages.append(f"#### {message.name}\n")
            if notes.get(message.name):
                messages.append(notes[message.name] + "\n")
            if not message.fields:
                messages.append("No fields.\n")
                continue
            messages.append("| field | type | meaning |\n| --- | --- | --- |")
            for field in message.fields:
                note = notes.get(f"{message.name}.{field.name}", "")
                messages.append(f"| `{field.name}` | `{field_type(field)}` | {cell(note)} |")
            messages.append("")
        for enum in descriptor.enum_types_by_name.values():
            messages.append(f"#### {enum.name}\n")
            if notes.get(enum.name):
                messages.append(notes[enum.name] + "\n")
            messages.append("| value | number | meaning |\n| --- | --- | --- |")
            for value in enum.values:
                note = notes.get(f"{enum.name}.{value.name}", "")
                messages.append(f"| `{value.name}` | {value.number} | {cell(note)} |")
            messages.append("")
    return "## Services\n\n" + "\n".join(services) + "\n## Messages\n\n" + "\n".join(messages)


# --- measurements ---------------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested keys as dotted paths; lists of scalars stay one value, lists of objects get an index."""
    if isinstance(value, dict):
        if not value and prefix:
            yield prefix, {}
        for key, inner in value.items():
            yield from flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        for i, inner in enumerate(value):
            yield from flatten(inner, f"{prefix}[{i}]")
    else:
        yield prefix, value


def show(value: Any) -> str:
    """A value as its JSON text (strings plain), for a table cell."""
    return cell(value if isinstance(value, str) else json.dumps(value))


def result_files() -> list[Path]:
    return sorted(RESULTS_DIR.glob("*.json"))


def is_scalar(value: Any) -> bool:
    """A value shown in one cell: not a mapping, and not a list holding mappings or lists."""
    if isinstance(value, list):
        return not any(isinstance(v, dict | list) for v in value)
    return not isinstance(value, dict)


def is_grid(value: Any) -> bool:
    """A dict of at least two dicts that share one set of scalar keys: it reads best as rows x columns."""
    if not isinstance(value, dict) or len(value) < 2 or not all(isinstance(v, dict) and v for v in value.values()):
        return False
    columns = [list(v) for v in value.values()]
    return all(c == columns[0] for c in columns) and all(is_scalar(x) for v in value.values() for x in v.values())


def result_tables(data: Any) -> str:
    """Every value of one result: grids (e.g. per-category figures) as their own tables, the rest flattened."""
    flat: list[tuple[str, Any]] = []
    grids: list[tuple[str, dict[str, dict[str, Any]]]] = []

    def walk(value: Any, prefix: str) -> None:
        if is_grid(value):
            grids.append((prefix, value))
        elif isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(inner, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat.extend(flatten(value, prefix))

    walk(data, "")
    out = ["| key | value |\n| --- | --- |"]
    out.extend(f"| `{cell(key)}` | {show(value)} |" for key, value in flat)
    for prefix, grid in grids:
        columns = list(next(iter(grid.values())))
        out.append(f"\n`{cell(prefix)}`\n")
        out.append("| | " + " | ".join(f"`{cell(c)}`" for c in columns) + " |")
        out.append("| --- |" + " --- |" * len(columns))
        for row, values in grid.items():
            out.append(f"| `{cell(row)}` | " + " | ".join(show(values[c]) for c in columns) + " |")
    return "\n".join(out)


def measurements() -> str:
    """One section per results file: where it ran (its note), every value in tables, the line itself."""
    out = []
    for path in result_files():
        line = path.read_text().strip()
        data = json.loads(line)
        name = (data.get("bench") or data.get("drill")) if isinstance(data, dict) else None
        name = name or path.stem
        out.append(f"## {name}\n")
        out.append(f"From `docs/results/{path.name}`.\n")
        note = path.with_suffix(".md")
        if note.is_file():
            out.append(note.read_text().strip() + "\n")
        out.append(result_tables(data) + "\n")
        out.append('??? note "The JSON line, as printed"\n')
        out.append("    ```json\n    " + line + "\n    ```\n")
    return "\n".join(out) if out else "No results yet: `docs/results/` holds no JSON file.\n"


GENERATORS = {"configuration": configuration, "protocol": protocol, "measurements": measurements}
