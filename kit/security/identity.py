"""Workload names, their certificate names, and the caller of a gRPC call.

A workload name is what authorisation tables speak of (``gateway``, ``search``, ...). Its
certificate carries it twice: the URI SAN :func:`spiffe_id` (read by servers to know the
caller) and the DNS SAN :func:`dns_name` (checked by clients as the server name, since
gRPC verifies a server by DNS name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

TRUST_DOMAIN: Final = "webook"
SPIFFE_PREFIX: Final = f"spiffe://{TRUST_DOMAIN}/"
DNS_SUFFIX: Final = f".{TRUST_DOMAIN}.internal"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class AuthContextSource(Protocol):
    """What :func:`peer_identity` reads: a servicer context's ``auth_context()``."""

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        """The transport's authentication properties."""
        ...


def check_name(name: str) -> str:
    """``name`` if it is a valid workload name (lower-case DNS label), else ``ValueError``."""
    if not _NAME.match(name):
        raise ValueError(f"not a workload name: {name!r} (lower-case letters, digits, '-')")
    return name


def spiffe_id(name: str) -> str:
    """The URI SAN naming workload ``name``: ``spiffe://webook/<name>``."""
    return SPIFFE_PREFIX + check_name(name)


def dns_name(name: str) -> str:
    """The DNS SAN naming workload ``name``, checked by its clients: ``<name>.webook.internal``."""
    return check_name(name) + DNS_SUFFIX


def name_of(uri: str) -> str | None:
    """The workload name in a ``spiffe://webook/<name>`` URI; ``None`` for any other URI."""
    if not uri.startswith(SPIFFE_PREFIX):
        return None
    name = uri[len(SPIFFE_PREFIX) :]
    return name if _NAME.match(name) else None


def peer_identity(context: AuthContextSource) -> str | None:
    """The caller's workload name from its verified client certificate.

    ``None`` when the call did not come over mutual TLS, or the certificate names no
    workload of this trust domain. gRPC fills ``peer_spiffe_id`` when the certificate has
    exactly one SPIFFE URI SAN; otherwise the SANs are searched.
    """
    auth = context.auth_context()
    for raw in auth.get("peer_spiffe_id", ()):
        name = name_of(raw.decode("utf-8", "replace"))
        if name is not None:
            return name
    for raw in auth.get("x509_subject_alternative_name", ()):
        name = name_of(raw.decode("utf-8", "replace"))
        if name is not None:
            return name
    return None
