"""Generates the Python code of the repository's proto/ with grpcio-tools.

Run with the venv's python (scripts/install-deps.sh does, after installing
requirements.txt):

    .venv/bin/python generate.py

Writes generated/affinity/v1/affinity_pb2{,_grpc}.py (+ .pyi), gitignored:
the proto stays the one source of truth.
"""

import importlib.resources
import pathlib
import shutil
import sys

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
OUT = HERE / "generated"


def main() -> int:
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
    if not protos:
        print(f"generate: no .proto under {PROTO_ROOT}", file=sys.stderr)
        return 1
    # The well-known types (google/protobuf/*.proto) grpcio-tools ships.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    tmp = OUT.with_name(OUT.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *protos,
        ]
    )
    if status != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"generate: protoc failed ({status})", file=sys.stderr)
        return 1
    # Replace the previous output only once the new one is complete.
    shutil.rmtree(OUT, ignore_errors=True)
    tmp.rename(OUT)
    print(f"generate: {', '.join(protos)} -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
