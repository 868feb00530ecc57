"""The route template a request maps to (``/users/profile``), for metric and log labels.

Resolved from the app's route table without running the router, so it is known even for
requests an outer layer answers itself (a 401 from the login check). Requests that match no
route are labelled ``unmatched``: raw paths would make label cardinality unbounded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import Scope

UNMATCHED: Final = "unmatched"
_SCOPE_KEY: Final = "webook.route_template"


@dataclass(frozen=True, slots=True)
class _Template:
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    template: str


class RouteTemplates:
    """Maps a request to its route's path template; :meth:`index` it once routes exist."""

    def __init__(self) -> None:
        self._templates: tuple[_Template, ...] = ()

    def index(self, routes: Sequence[BaseRoute]) -> None:
        """Learn the templates of ``routes`` (included routers flattened)."""
        templates = []
        for route in iter_route_contexts(routes):
            pattern, template = route.path_regex, route.path_format
            if isinstance(pattern, re.Pattern) and isinstance(template, str):
                methods = route.methods
                templates.append(
                    _Template(pattern, frozenset(methods) if methods else None, template)
                )
        self._templates = tuple(templates)

    def resolve(self, scope: Scope) -> str:
        """The template ``scope`` matches, or ``unmatched``; memoized in the scope."""
        cached = scope.get(_SCOPE_KEY)
        if isinstance(cached, str):
            return cached
        template = self._match(scope["path"], scope.get("method", ""))
        scope[_SCOPE_KEY] = template
        return template

    def _match(self, path: str, method: str) -> str:
        wrong_method: str | None = None
        for candidate in self._templates:
            if candidate.pattern.match(path):
                if candidate.methods is None or method in candidate.methods:
                    return candidate.template
                # Right path, wrong method (405): still a known, bounded template.
                wrong_method = wrong_method or candidate.template
        return wrong_method or UNMATCHED
