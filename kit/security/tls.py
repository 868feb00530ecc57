"""Mutual TLS for gRPC: server and client credentials that follow their files, and the
channel factory that checks the server is the service the client meant to call.

Certificates rotate without restarts. The server side hands gRPC a certificate fetcher
(:class:`ServerTls`); gRPC calls it before each handshake, so it only compares the files'
``os.stat`` signature with the last one it saw and reads them again when it changed. The
client side (:class:`ClientTls`) cannot be told by gRPC when to look, so a background task
checks the files every ``tls_reload_seconds`` and, on change, builds new channel credentials
and tells its subscribers (:class:`kit.grpcx.client.ServiceClients` re-opens its endpoint
channels). A periodic check rather than a lazy one on channel creation, because long-lived
channels must move to the new certificate before the old one expires even when no channel
is created.

Files that cannot be read or parsed, or a key that does not match its certificate (the
instant between writing a new key and its certificate), keep the previous material: the
failure is logged and counted once per change of the files, and serving goes on.

Metrics (default registry), ``role`` is ``server`` or ``client``:

- ``webook_tls_reloads_total{role}``: certificates loaded after a change of the files;
- ``webook_tls_reload_failures_total{role}``: changes of the files that could not be loaded;
- ``webook_tls_certificate_expiry_seconds{role}``: seconds until the loaded certificate
  expires (negative once expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import Counter, Gauge

from kit.security.identity import dns_name

logger = logging.getLogger(__name__)

SERVER: Final = "server"
CLIENT: Final = "client"

RELOADS = Counter(
    "webook_tls_reloads_total",
    "Certificates loaded after their files changed, by role (server/client).",
    ["role"],
)
RELOAD_FAILURES = Counter(
    "webook_tls_reload_failures_total",
    "Changes of the certificate files that could not be loaded (the previous ones stay).",
    ["role"],
)
EXPIRY = Gauge(
    "webook_tls_certificate_expiry_seconds",
    "Seconds until the loaded certificate expires, by role (server/client).",
    ["role"],
)


class TlsSettings(Protocol):
    """The settings :meth:`TlsFiles.from_settings` reads (:class:`kit.config.ClientSettings`)."""

    @property
    def tls_cert_file(self) -> str: ...
    @property
    def tls_key_file(self) -> str: ...
    @property
    def tls_ca_file(self) -> str: ...


class TlsMaterialError(ValueError):
    """Certificate files that cannot be used (unreadable, not PEM, key and cert mismatched)."""


@dataclass(frozen=True)
class TlsFiles:
    """A workload's certificate (chain), its private key and the CA it trusts, as PEM files."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    @classmethod
    def from_settings(cls, settings: TlsSettings) -> TlsFiles | None:
        """The files named by the settings; ``None`` when TLS is off (none set)."""
        if not (settings.tls_cert_file and settings.tls_key_file and settings.tls_ca_file):
            return None
        return cls(
            Path(settings.tls_cert_file), Path(settings.tls_key_file), Path(settings.tls_ca_file)
        )

    def signature(self) -> tuple[tuple[int, int, int] | None, ...]:
        """What changes when any file is replaced or rewritten: inode, size, mtime of each."""
        stamps: list[tuple[int, int, int] | None] = []
        for path in (self.cert_file, self.key_file, self.ca_file):
            try:
                stat = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(stamps)


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes of a :class:`TlsFiles`, checked, with what the logs and metrics need."""

    cert_chain: bytes
    private_key: bytes
    root_certificates: bytes
    serial: int
    not_after: float
    """Expiry of the certificate, Unix time."""

    @classmethod
    def load(cls, files: TlsFiles) -> TlsMaterial:
        """Read and check ``files``; :class:`TlsMaterialError` if they are not usable."""
        try:
            chain = files.cert_file.read_bytes()
            key_bytes = files.key_file.read_bytes()
            roots = files.ca_file.read_bytes()
            cert = x509.load_pem_x509_certificate(chain)
            key = serialization.load_pem_private_key(key_bytes, password=None)
            if not x509.load_pem_x509_certificates(roots):
                raise ValueError("no CA certificate")
        except (OSError, ValueError, TypeError) as exc:
            raise TlsMaterialError(f"cannot load the TLS files: {exc}") from exc
        if cert.public_key() != key.public_key():
            raise TlsMaterialError(
                f"{files.key_file.name} is not the key of {files.cert_file.name}"
            )
        return cls(
            chain, key_bytes, roots, cert.serial_number, cert.not_valid_after_utc.timestamp()
        )


class _Watched:
    """The material of one set of files, re-read when their signature changes.

    Thread-safe: the server's fetcher runs on gRPC's threads.
    """

    def __init__(self, files: TlsFiles, role: str) -> None:
        self.files = files
        self.role = role
        self._lock = threading.Lock()
        self._signature = files.signature()
        # Start-up fails loudly on bad files; only later changes are tolerated.
        self.material = TlsMaterial.load(files)
        self._expiry = EXPIRY.labels(role)
        self._expiry.set_function(self._seconds_left)
        self._log("tls certificate loaded")

    def _seconds_left(self) -> float:
        return self.material.not_after - time.time()

    def refresh(self) -> TlsMaterial | None:
        """The new material if the files changed and load; ``None`` otherwise."""
        signature = self.files.signature()
        with self._lock:
            if signature == self._signature:
                return None
            # Remember the signature even if loading fails: the same broken files are
            # reported once, not at every handshake; the next change is tried again.
            self._signature = signature
            try:
                material = TlsMaterial.load(self.files)
            except TlsMaterialError as exc:
                RELOAD_FAILURES.labels(self.role).inc()
                logger.error(
                    "tls certificate reload failed; keeping the previous certificate",
                    extra={
                        "role": self.role,
                        "error": str(exc),
                        "cert_file": str(self.files.cert_file),
                        "serial": f"{self.material.serial:x}",
                    },
                )
                return None
            if material == self.material:
                return None  # rewritten with the same content
            self.material = material
        RELOADS.labels(self.role).inc()
        self._log("tls certificate reloaded")
        return material

    def _log(self, message: str) -> None:
        logger.info(
            message,
            extra={
                "role": self.role,
                "cert_file": str(self.files.cert_file),
                "serial": f"{self.material.serial:x}",
                "expires_in_s": round(self._seconds_left()),
            },
        )


class ServerTls:
    """Server credentials requiring a client certificate signed by the CA, following the
    files: :attr:`credentials` goes to ``server.add_secure_port``.

    Raises :class:`TlsMaterialError` when the files are not usable at construction.
    """

    def __init__(self, files: TlsFiles) -> None:
        self._watched = _Watched(files, SERVER)
        self.credentials: grpc.ServerCredentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(self._watched.material),
            # grpc-stubs types the fetcher's result without the None that grpc documents
            # (and that keeps the current configuration).
            self._fetch,  # type: ignore[arg-type]
            require_client_authentication=True,
        )

    @property
    def serial(self) -> int:
        """Serial number of the certificate new handshakes present."""
        return self._watched.material.serial

    @staticmethod
    def _configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(material.private_key, material.cert_chain)],
            root_certificates=material.root_certificates,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC before each handshake: None keeps the current configuration. An
        # exception here would only be logged by gRPC, but keep it from happening at all.
        try:
            material = self._watched.refresh()
        except Exception:
            logger.exception("tls certificate check failed", extra={"role": SERVER})
            return None
        return None if material is None else self._configuration(material)


class ClientTls:
    """Client channel credentials (CA, key, certificate) re-read when the files change.

    :meth:`check` looks at the files (cheap: ``os.stat``) and, when they changed and load,
    replaces :attr:`credentials`, increments :attr:`generation` and calls the subscribers;
    :meth:`start` runs it every ``reload_seconds`` in the running event loop until
    :meth:`stop`. Raises :class:`TlsMaterialError` when the files are not usable at
    construction.
    """

    def __init__(self, files: TlsFiles, reload_seconds: float = 30.0) -> None:
        if reload_seconds <= 0:
            raise ValueError("reload_seconds must be > 0")
        self._watched = _Watched(files, CLIENT)
        self.reload_seconds = reload_seconds
        self.generation = 0
        self.credentials = self._credentials(self._watched.material)
        self._subscribers: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def serial(self) -> int:
        """Serial number of the certificate new channels present."""
        return self._watched.material.serial

    @staticmethod
    def _credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=material.root_certificates,
            private_key=material.private_key,
            certificate_chain=material.cert_chain,
        )

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after each change of :attr:`credentials`; returns the
        unsubscribe function. Callbacks run in the thread that called :meth:`check`."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def check(self) -> bool:
        """Reload the credentials if the files changed; whether they did."""
        material = self._watched.refresh()
        if material is None:
            return False
        self.credentials = self._credentials(material)
        self.generation += 1
        for callback in list(self._subscribers):
            try:
                callback()
            except Exception:
                logger.exception("a tls credentials subscriber failed", extra={"role": CLIENT})
        return True

    @property
    def watching(self) -> bool:
        """Whether the periodic check runs."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Check the files every ``reload_seconds`` in the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop the periodic check."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.reload_seconds)
            try:
                self.check()
            except Exception:
                logger.exception("tls certificate check failed", extra={"role": CLIENT})


def mtls_channel_factory(
    service: str,
    tls: ClientTls,
    *,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] = (),
) -> Callable[[str], grpc.aio.Channel]:
    """A ``BalancedChannel`` channel factory dialling ``service``'s endpoints over mutual TLS.

    The server's certificate must name ``dns_name(service)``: a registry entry pointing at
    another service's server (or one with a certificate from another CA) fails the
    handshake. Each channel takes ``tls``'s credentials of the moment, so channels opened
    after a reload present the new certificate. ``options`` and ``interceptors`` are the
    balancer's (``BalancerConfig.channel_options``, its ``interceptors``).
    """
    target_name = dns_name(service)
    channel_options = [*options, ("grpc.ssl_target_name_override", target_name)]

    def open_channel(addr: str) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            addr, tls.credentials, options=channel_options, interceptors=interceptors or None
        )

    return open_channel
