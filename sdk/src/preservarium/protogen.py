"""Regenerate the committed gRPC/protobuf modules from proto/ (`make proto`)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = ROOT / "proto"
OUTPUT_ROOT = ROOT / "sdk" / "src"
PROTO_FILES = ["preservarium/sandbox/v1/sandbox.proto"]


def generate(output_root: Path = OUTPUT_ROOT) -> list[Path]:
    """Run protoc (grpcio-tools) into `output_root`; return the files written."""
    from grpc_tools import protoc  # a dev tool, not a runtime dependency

    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    written = []
    for proto in PROTO_FILES:
        stem = output_root / proto.removesuffix(".proto")
        written += [Path(f"{stem}_pb2.py"), Path(f"{stem}_pb2.pyi"), Path(f"{stem}_pb2_grpc.py")]
    return written


def main() -> None:
    """Entry point of `python -m preservarium.protogen`."""
    for path in generate():
        print(path.relative_to(ROOT), file=sys.stdout)


if __name__ == "__main__":
    main()
