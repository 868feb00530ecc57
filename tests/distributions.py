"""The project's declared dependencies as sets of installed distributions.

``pyproject.toml`` names what the runtime needs (``dependencies``) and what only the local
stack or development needs (the ``local`` and ``dev`` extras). The checks of the runtime
image (tests/deploy/test_dockerfile.py) and of the runtime packages' imports
(tests/test_dependencies.py) need those lists closed over their own requirements: which
distributions a ``pip install .`` (or ``.[dev]``) brings, read from the metadata of the
distributions installed in this environment, markers evaluated for it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = canonicalize_name("webook-py")


@cache
def pyproject() -> dict[str, object]:
    """``pyproject.toml``'s ``[project]`` table."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    assert isinstance(project, dict)
    return project


def declared(extra: str | None = None) -> list[Requirement]:
    """The requirements ``pyproject.toml`` lists: the runtime ones, or those of ``extra``."""
    project = pyproject()
    if extra is None:
        names = project["dependencies"]
    else:
        extras = project["optional-dependencies"]
        assert isinstance(extras, dict)
        names = extras[extra]
    assert isinstance(names, list)
    return [Requirement(str(name)) for name in names]


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    """Whether ``requirement`` holds here when its owner was asked for ``extras``."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def closure(requirements: Iterable[Requirement]) -> set[NormalizedName]:
    """Every distribution that installing ``requirements`` brings, themselves included.

    The project itself (an extra naming ``webook-py[...]``) is expanded from pyproject.toml,
    not from its installed metadata, so that an edit is seen before the next install.
    """
    found: set[NormalizedName] = set()
    pending = [(r, frozenset(r.extras)) for r in requirements]
    expanded: set[tuple[NormalizedName, frozenset[str]]] = set()
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if (name, extras) in expanded:
            continue
        expanded.add((name, extras))
        if name == PROJECT:
            pending += [(r, frozenset(r.extras)) for extra in extras for r in declared(extra)]
            continue
        found.add(name)
        for text in metadata.requires(name) or []:
            child = Requirement(text)
            if _applies(child, extras):
                pending.append((child, frozenset(child.extras)))
    return found


def runtime() -> set[NormalizedName]:
    """What ``pip install .`` installs: the runtime image's distributions."""
    return closure(declared())


def development_only() -> set[NormalizedName]:
    """What only ``.[dev]`` (which includes ``local``) adds to the runtime's distributions."""
    return closure(declared("dev")) - runtime()
