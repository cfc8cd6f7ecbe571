"""Generates the Python modules for every .proto under protos/ into OUT (default: the
repository root, where they import as `higgs_tts.v1.*`). `make protos` runs it; a test runs it
into a temporary folder and compares."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parent


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in PROTOS.rglob("*.proto"))
    well_known = files("grpc_tools") / "_proto"  # google/protobuf/*.proto, as shipped with protoc
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ])
    if status != 0:
        raise SystemExit(f"protoc failed ({status})")


if __name__ == "__main__":
    generate(Path(sys.argv[1] if len(sys.argv) > 1 else PROTOS.parent))
