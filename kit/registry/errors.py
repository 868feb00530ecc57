"""Errors raised by the service registry.

Error tree::

    RegistryError                 root of everything this package raises
    └── InvalidInstanceError      an instance (or a stored registry value) is malformed
"""

from __future__ import annotations


class RegistryError(Exception):
    """Root of the errors raised by :mod:`kit.registry`."""


class InvalidInstanceError(RegistryError, ValueError):
    """A service instance, or a value read from the registry, is malformed."""
