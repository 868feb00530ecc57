"""Generate Python code from ``protos/`` into ``gen/`` (``make proto``).

Runs ``grpc_tools.protoc`` with ``-I protos`` so generated modules import each other as
``webook.<svc>.v1.<svc>_pb2`` with no post-processing, emits mypy-protobuf ``.pyi`` stubs,
and adds empty ``__init__.py`` files so that ``webook`` is a regular package.

Usage: ``python -m kit.protogen PROTO_ROOT OUT_DIR``
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc


def proto_files(root: Path) -> list[Path]:
    """All ``.proto`` files under ``root``, sorted for a stable output."""
    return sorted(root.rglob("*.proto"))


def generate(proto_root: Path, out_dir: Path) -> None:
    """Generate messages, gRPC stubs and type stubs for every proto under ``proto_root``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    files = [str(p.relative_to(proto_root)) for p in proto_files(proto_root)]
    # The mypy-protobuf plugins live next to the interpreter, which may not be on PATH.
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {proto_root}")
    for package_dir in {p.parent for p in out_dir.rglob("*_pb2.py")}:
        current = package_dir
        while current != out_dir:
            (current / "__init__.py").touch()
            current = current.parent


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m kit.protogen PROTO_ROOT OUT_DIR\n")
        return 2
    generate(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
