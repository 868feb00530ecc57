"""Layering rules of STYLE.md, checked on the import graph of our own code.

- services never import each other (they talk through generated stubs or events);
- ``kit`` knows nothing of services or the gateway; the gateway never imports services;
- a service's ``domain.py`` imports no ORM, no protobuf/gRPC, no Redis.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _python_files(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts]


def _services() -> list[str]:
    return sorted(
        p.name for p in (ROOT / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()
    )


def test_services_do_not_import_each_other() -> None:
    offences = []
    for service in _services():
        for path in _python_files(f"services/{service}"):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] == "services" and len(parts) > 1 and parts[1] != service:
                    offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, offences


def test_kit_and_gateway_do_not_import_services() -> None:
    offences = []
    for package, forbidden in (("kit", ("services", "gateway")), ("gateway", ("services",))):
        for path in _python_files(package):
            if "tests" in path.parts:
                continue
            offences += [
                f"{path.relative_to(ROOT)} imports {name}"
                for name in _imports(path)
                if name.split(".")[0] in forbidden
            ]
    assert not offences, offences


def test_domain_modules_are_plain() -> None:
    forbidden = ("sqlalchemy", "grpc", "webook", "redis", "google", "aiokafka")
    offences = []
    for service in _services():
        domain = ROOT / "services" / service / "domain.py"
        if domain.exists():
            offences += [
                f"{domain.relative_to(ROOT)} imports {name}"
                for name in _imports(domain)
                if name.split(".")[0] in forbidden
            ]
    assert not offences, offences


def test_the_rules_see_imports() -> None:
    # Guard against a vacuous pass: the checker must find this file's own imports.
    assert "ast" in set(_imports(Path(__file__)))
