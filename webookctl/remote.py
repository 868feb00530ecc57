"""Reaching a webook service from ``webookctl``: its TLS client identity, the service at
``--address`` or found in etcd, and a failed call as one line.

The commands that call a service's gRPC API (``jobs``, ``sms``, ``migrate``) share these, so
that they find services, present the operator's certificate and report failures alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import grpc

from kit.errors import AppError
from kit.grpcx.client import ServiceClients
from kit.grpcx.errors import app_error_from_rpc
from kit.registry import EtcdRegistry, EtcdRegistryConfig
from kit.security.tls import ClientTls, TlsFiles, TlsMaterialError
from webookctl.errors import CommandFailed, UsageError
from webookctl.settings import CtlSettings

OPERATOR: Final = "operator"
"""The identity whose certificate the operator-only methods accept (their protos' callers)."""


def client_tls(settings: CtlSettings) -> ClientTls | None:
    """The client's TLS material from the ``--tls-*`` settings; ``None`` for plaintext."""
    files = TlsFiles.from_settings(settings)
    try:
        # A command is gone long before a certificate rotation: the files are not watched.
        return ClientTls(files, reload_seconds=3600) if files is not None else None
    except TlsMaterialError as exc:
        raise CommandFailed(str(exc)) from exc


def registry_config(settings: CtlSettings, service: str) -> EtcdRegistryConfig:
    """Where ``service`` is registered: the first etcd endpoint, with the command's timeout
    for each request; a usage error when no endpoint is set."""
    if not settings.etcd_endpoints:
        raise UsageError(f"no {service} address: pass --address HOST:PORT or etcd endpoints")
    return EtcdRegistryConfig(
        endpoint=settings.etcd_endpoints[0],
        prefix=settings.registry_prefix,
        username=settings.etcd_username,
        password=settings.etcd_password.get_secret_value(),
        rpc_timeout=settings.timeout,
        discover_timeout=settings.timeout,
    )


def service_clients(settings: CtlSettings, service: str, address: str) -> ServiceClients:
    """Channels to ``service``: at ``address``, else found in etcd; TLS when set."""
    tls = client_tls(settings)
    if address:
        return ServiceClients(registry=None, peers={service: address}, tls=tls)
    return ServiceClients(registry=EtcdRegistry(registry_config(settings, service)), tls=tls)


@asynccontextmanager
async def reported(service: str, method: str) -> AsyncIterator[None]:
    """Turn a failed call of ``service``'s ``method`` inside the block into one
    :class:`CommandFailed` line: the status, the error's reason and message, and what to
    present when the service refused the caller's identity."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        error = app_error_from_rpc(exc)
        hint = (
            f" (it accepts the {OPERATOR} certificate only: --tls-cert/--tls-key)"
            if exc.code() is grpc.StatusCode.PERMISSION_DENIED
            else ""
        )
        raise CommandFailed(
            f"{service} {method}: {exc.code().name} {error.reason}: {error.message}{hint}"
        ) from exc
    except AppError as exc:
        raise CommandFailed(f"{service} {method}: {exc.reason}: {exc.message}") from exc
