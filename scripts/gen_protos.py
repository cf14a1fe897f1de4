"""Regenerate the Python stubs beside protos/echo/v1/*.proto (run after editing a contract)."""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent / "protos"


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run grpcio-tools' protoc on every contract; return the files written under out_dir."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(proto_root)) for p in (proto_root / "echo").rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted(p for p in out_dir.rglob("*") if p.suffix in {".py", ".pyi"} and "_pb2" in p.name)


if __name__ == "__main__":
    written = generate(PROTO_ROOT if len(sys.argv) < 2 else Path(sys.argv[1]))
    print("\n".join(str(p) for p in written))
