"""The schema registry: which settings class describes each service's configuration.

A write to the configuration centre is checked against the settings class of the service it
is for before it reaches etcd, so ``webookctl`` must know every class. They are found, not
listed: the gateway's :class:`~gateway.settings.GatewaySettings`, and for every service of
the local stack's catalog (:data:`devstack.catalog.CATALOG`, the one list of services) the
class in ``services/<name>/settings.py`` that reads the service's environment prefix. A new
service therefore needs no entry here, and one whose settings class cannot be found fails
the registry's test rather than going unchecked.

The base a change is validated on is the class's own defaults in ``test`` mode
(:func:`defaults_of`): the checks that only concern a running production process (keys
still at their development value, TLS files) are not what a configuration value is judged
by, and the operator's own environment variables must not leak into the judgement.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from functools import cache
from typing import Final

from devstack.catalog import CATALOG
from gateway.settings import GatewaySettings
from kit.config import BaseServiceSettings, Mode

GATEWAY: Final = "gateway"

SettingsType = type[BaseServiceSettings]


class UnknownService(LookupError):
    """A name that is neither a catalog service nor the gateway."""


def _settings_class(module_name: str, env_prefix: str) -> SettingsType:
    """The one settings class defined in ``module_name`` that reads ``env_prefix``."""
    module = importlib.import_module(module_name)
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseServiceSettings)
        and value.__module__ == module.__name__
        and value.model_config.get("env_prefix") == env_prefix
    ]
    if len(found) != 1:
        raise LookupError(
            f"{module_name} should define one settings class with prefix {env_prefix}, "
            f"found {[c.__name__ for c in found]}"
        )
    return found[0]


@cache
def registry() -> Mapping[str, SettingsType]:
    """Service name → its settings class: the gateway, then the catalog's services."""
    found: dict[str, SettingsType] = {GATEWAY: GatewaySettings}
    for spec in CATALOG:
        found[spec.name] = _settings_class(f"{spec.module}.settings", spec.env_prefix)
    return found


def settings_type(service: str) -> SettingsType:
    """The settings class of ``service``; :class:`UnknownService` naming the known ones."""
    known = registry()
    if service not in known:
        raise UnknownService(f"unknown service {service!r}; known: {', '.join(sorted(known))}")
    return known[service]


def defaults_of(cls: SettingsType) -> BaseServiceSettings:
    """``cls``'s defaults in test mode, without reading the environment (see above)."""
    # model_construct sets defaults (default factories included) and skips the sources:
    # the class's own defaults are valid in test mode by construction.
    return cls.model_construct(mode=Mode.TEST)
