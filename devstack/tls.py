"""Mutual TLS for the local stack: its certificates, and channels that present one.

Every stack devstack starts runs every gRPC hop over mutual TLS, as in a cluster
(docs/security.md). :func:`stack_pki` makes (once) and reuses a local CA and one certificate
per identity — every catalog service, the gateway, and the operator — under
``<state dir>/pki``;
:func:`tls_env` points a process's ``<PREFIX>TLS_CERT_FILE``/``_KEY_FILE``/``_CA_FILE`` at
its own files. A client that calls a stack service directly (a test, a readiness check)
does so as some workload, with :class:`CallerTls`: that workload's certificate, the stack's
CA, and the service's DNS name (``<service>.webook.internal``) as the name to verify,
since local addresses are ``127.0.0.1:<port>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc

from devstack.catalog import SERVICE_NAMES
from kit.security.identity import dns_name
from kit.security.pki import Pki, ensure_local_pki

GATEWAY: Final = "gateway"
# The identity of operators' tools (``webookctl sms records``): a certificate only, since no
# process of the stack runs as it, so it has no etcd or Redis user (devstack.credentials).
OPERATOR: Final = "operator"
# Under the stack's state directory (``.run/`` for ``make run``, a scratch dir for tests).
PKI_DIR: Final = "pki"


def stack_identities() -> tuple[str, ...]:
    """The workloads of the stack's processes: every catalog service and the gateway."""
    return (*SERVICE_NAMES, GATEWAY)


def certificate_identities() -> tuple[str, ...]:
    """Who gets a certificate: the workloads, and the operator (:data:`OPERATOR`)."""
    return (*stack_identities(), OPERATOR)


def stack_pki(state_dir: Path) -> Pki:
    """The stack's CA and workload certificates under ``state_dir/pki``, made or reused.

    Still-valid files are reused, so a restarted stack keeps its CA (and a developer's
    tools that trust it keep working).
    """
    return ensure_local_pki(state_dir / PKI_DIR, certificate_identities())


def tls_env(pki: Pki, identity: str, prefix: str) -> dict[str, str]:
    """The settings that turn mutual TLS on in the process of workload ``identity``."""
    cert, key = pki.files(identity)
    return {
        f"{prefix}TLS_CERT_FILE": str(cert),
        f"{prefix}TLS_KEY_FILE": str(key),
        f"{prefix}TLS_CA_FILE": str(pki.ca_file),
    }


@dataclass(frozen=True)
class CallerTls:
    """How a client calls stack service ``service`` as workload ``identity`` over mutual TLS."""

    pki: Pki
    identity: str
    service: str

    def credentials(self) -> grpc.ChannelCredentials:
        """The stack's CA as the trust root, and ``identity``'s certificate and key."""
        cert, key = self.pki.files(self.identity)
        return grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca_file.read_bytes(),
            private_key=key.read_bytes(),
            certificate_chain=cert.read_bytes(),
        )

    def options(self) -> list[tuple[str, str]]:
        """Channel options: verify the server as ``<service>.webook.internal``."""
        return [("grpc.ssl_target_name_override", dns_name(self.service))]

    def aio_channel(self, address: str) -> grpc.aio.Channel:
        """An asyncio channel to ``address`` (``host:port``) of the service."""
        return grpc.aio.secure_channel(address, self.credentials(), options=self.options())

    def sync_channel(self, address: str) -> grpc.Channel:
        """A blocking channel to ``address`` (``host:port``) of the service."""
        return grpc.secure_channel(address, self.credentials(), options=self.options())
