"""Domain values from table rows: one declaration per mapping instead of a hand-copied
``Value(id=row.id, author_id=row.author_id, ...)`` per service.

A repository turns its rows into frozen domain dataclasses whose fields mostly carry the
columns' names (``ctime_ms`` for ``ctime`` and a few enums aside). :func:`row_mapper`
declares that once: which fields come from which columns, which go through a converter,
which the caller gives. The names are checked against the row class when the mapper is
built (at import), so a renamed column fails at start-up, not on the first read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

T = TypeVar("T")

RowMapper = Callable[..., T]
"""``mapper(row, **given) -> T``: the value stored in ``row``, ``given`` for what it lacks."""


def row_mapper(
    target: type[T],
    source: type[Any],
    *,
    renamed: Mapping[str, str] | None = None,
    converted: Mapping[str, Callable[[Any], Any]] | None = None,
    given: Iterable[str] = (),
) -> RowMapper[T]:
    """A function building a ``target`` dataclass from the attributes of a row of ``source``.

    Args:
        target: the dataclass to build.
        source: the row class (an ORM class, or the ORM class whose columns a
            ``select(...)`` returns as ``Row`` objects).
        renamed: field name → column name where they differ.
        converted: field name → what the column's value goes through (``ArticleStatus``).
        given: init fields the row does not hold: the caller passes them by keyword, or
            their defaults apply.

    Raises ``ValueError`` for a name ``target`` or ``source`` does not have.
    """
    renamed = dict(renamed or {})
    converted = dict(converted or {})
    skipped = set(given)
    declared = dataclasses.fields(cast(Any, target))
    fields = [f.name for f in declared if f.init and f.name not in skipped]
    unknown = (set(renamed) | set(converted) | skipped) - {f.name for f in declared}
    if unknown:
        raise ValueError(f"{target.__name__} has no fields {sorted(unknown)}")
    columns = [renamed.get(name, name) for name in fields]
    missing = [column for column in columns if not hasattr(source, column)]
    if missing:
        raise ValueError(f"{source.__name__} has no columns {missing} for {target.__name__}")
    if not all(column.isidentifier() for column in columns):
        raise ValueError(f"columns must be names: {columns}")
    # Generated once, as dataclasses generate __init__, so that a call costs what the
    # hand-written ``Target(id=row.id, ...)`` costs.
    arguments = "".join(
        f"{name}=_convert_{name}(row.{column}), " if name in converted else f"{name}=row.{column}, "
        for name, column in zip(fields, columns, strict=True)
    )
    scope: dict[str, Any] = {f"_convert_{name}": fn for name, fn in converted.items()}
    scope["_target"] = target
    exec(f"def build(row, /, **given):\n    return _target({arguments}**given)\n", scope)
    build: RowMapper[T] = scope["build"]
    build.__name__ = build.__qualname__ = f"{target.__name__}_from_{source.__name__}"
    return build
