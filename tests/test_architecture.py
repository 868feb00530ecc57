"""Layering rules (docs/development.md), checked on the import graph and our own literals.

- services never import each other (they talk through generated stubs or events); what two
  services share about a third (a typed client of it) lives in ``clients/``, which imports
  no service and no gateway code;
- ``kit`` knows nothing of services or the gateway: it imports neither and writes no
  service's name as a string; the local stack lists services in ``devstack/catalog.py``
  alone, so adding a service to it is one entry;
- the gateway never imports services, not even in its tests (they use fakes);
- a service's ``domain.py`` imports no ORM, no protobuf/gRPC, no Redis.
- no code or doc names a file outside the repository (no relative path climbs out of it, and
  every ``*.md`` it names is one of ours).
"""

from __future__ import annotations

import ast
import re
import subprocess
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


def test_clients_import_no_service_nor_the_gateway() -> None:
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _python_files("clients")
        for name in _imports(path)
        if name.split(".")[0] in ("services", "gateway")
    ]
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


def _service_names_written(path: Path, names: set[str]) -> Iterator[str]:
    """String literals in ``path`` that are a service's name or its module path."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules = {f"services.{name}" for name in names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if (
                value in names
                or value in modules
                or value.startswith(tuple(m + "." for m in modules))
            ):
                yield f"{path.relative_to(ROOT)}:{node.lineno} writes {value!r}"


# Words of kit that are also a service's name but mean something else where they are
# written: (file, word).
NOT_A_SERVICE: frozenset[tuple[str, str]] = frozenset(
    {
        # An in-process cache's pub/sub invalidation feed: a log field and a metric label.
        ("kit/cache/invalidation.py", "feed"),
        ("kit/cache/metrics.py", "feed"),
    }
)


def test_kit_names_no_service() -> None:
    names = set(_services())
    offences = [
        offence
        for path in _python_files("kit")
        if "tests" not in path.parts
        for offence in _service_names_written(
            path,
            names - {word for file, word in NOT_A_SERVICE if file == str(path.relative_to(ROOT))},
        )
    ]
    assert not offences, offences


def test_devstack_lists_services_in_its_catalog_only() -> None:
    names = set(_services())
    # The WeChat emulator's "user" is the query parameter naming a WeChat test user.
    allowed = {"catalog.py", "wechat_emulator.py"}
    offences = [
        offence
        for path in _python_files("devstack")
        if "tests" not in path.parts and path.name not in allowed
        for offence in _service_names_written(path, names)
    ]
    assert not offences, offences


def test_gateway_tests_import_no_service_code() -> None:
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _python_files("gateway")
        if "tests" in path.parts
        for name in _imports(path)
        if name.split(".")[0] == "services"
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


def test_the_rules_see_imports_and_names() -> None:
    # Guard against a vacuous pass: the checkers must find what they look for.
    assert "ast" in set(_imports(Path(__file__)))
    assert len(_services()) >= 2
    sample = ROOT / "tests" / "test_architecture.py"
    names = {"_services", "tests"}
    found = list(_service_names_written(sample, names))
    assert any("'tests'" in offence for offence in found), found


_MARKDOWN_NAME = re.compile(r"[\w./-]*\b[\w-]+\.md\b")
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".sh", ""}


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [
        ROOT / name
        for name in listed.split("\0")
        if name and not name.startswith("gen/") and Path(name).suffix in _TEXT_SUFFIXES
    ]


_PARENT_STEPS = re.compile(r"(?:\.\./)+[\w.-]+")


def _outside_references(path: Path, documents: set[str]) -> Iterator[str]:
    """Every place in ``path`` that names a file outside the repository: a relative path
    climbing out of it, or a Markdown document the repository does not have. (Absolute
    paths are not judged: where a clone lives differs from machine to machine.)"""
    where = path.relative_to(ROOT)
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        for climb in _PARENT_STEPS.findall(line):
            if not (path.parent / climb).resolve().is_relative_to(ROOT):
                yield f"{where}:{number} names {climb}, outside the repository"
        for name in _MARKDOWN_NAME.findall(line):
            if Path(name).name not in documents:
                yield f"{where}:{number} names {name}, not in the repository"


def test_code_and_docs_refer_to_nothing_outside_the_repository() -> None:
    files = [path for path in _tracked_text_files() if path.exists()]
    documents = {path.name for path in files if path.suffix == ".md"}
    assert "README.md" in documents
    offences = [offence for path in files for offence in _outside_references(path, documents)]
    assert not offences, offences


def test_the_outside_reference_check_sees_each_kind(tmp_path: Path) -> None:
    sample = ROOT / "tests" / f"{tmp_path.name}.md"
    # Put together here, so that this file itself names nothing outside the repository.
    missing, climb = "NOWHERE" + ".md", "../" * 2 + "elsewhere"
    sample.write_text(f"see {missing} and {climb}; ../README.md is ours\n", encoding="utf-8")
    try:
        found = list(_outside_references(sample, {"README.md"}))
    finally:
        sample.unlink()
    assert len(found) == 2, found
