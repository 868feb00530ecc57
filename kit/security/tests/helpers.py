"""Test helpers for mutual TLS: an identity-reporting gRPC server, TLS channels, free ports
and a raw TLS handshake that reads the certificate a server presents."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from typing import Any, cast

import grpc
from cryptography import x509

from kit.security.identity import AuthContextSource, dns_name, peer_identity
from kit.security.pki import Pki
from kit.security.tls import ClientTls, ServerTls, TlsFiles, mtls_channel_factory

WHOAMI = "/test.Identity/Whoami"


class IdentityService:
    """Answers ``Whoami`` with the caller's workload name and client certificate serial.

    ``calls`` counts the calls that reached the handler: a refused handshake never does.
    """

    def __init__(self) -> None:
        self.calls = 0

    async def whoami(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.calls += 1
        source = cast(AuthContextSource, context)  # grpc-stubs: Mapping, not dict
        pems = list(context.auth_context().get("x509_pem_cert", ()))
        serial = x509.load_pem_x509_certificate(pems[0]).serial_number if pems else None
        return json.dumps({"peer": peer_identity(source), "serial": serial}).encode()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The generic handler serving ``/test.Identity/Whoami`` (raw bytes)."""
        return grpc.method_handlers_generic_handler(
            "test.Identity", {"Whoami": grpc.unary_unary_rpc_method_handler(self.whoami)}
        )


def workload_files(pki: Pki, name: str) -> TlsFiles:
    """The TLS files of workload ``name`` in ``pki``."""
    cert, key = pki.files(name)
    return TlsFiles(cert, key, pki.ca_file)


async def start_tls_server(
    handler: grpc.GenericRpcHandler[Any, Any], files: TlsFiles
) -> tuple[grpc.aio.Server, ServerTls, str]:
    """A loopback server requiring mutual TLS with ``files``; its address."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    tls = ServerTls(files)
    port = server.add_secure_port("127.0.0.1:0", tls.credentials)
    await server.start()
    return server, tls, f"127.0.0.1:{port}"


def mtls_channel(addr: str, service: str, files: TlsFiles) -> grpc.aio.Channel:
    """A channel to ``addr`` presenting ``files``' certificate, expecting ``service``."""
    return mtls_channel_factory(service, ClientTls(files))(addr)


async def whoami(channel: grpc.aio.Channel) -> dict[str, Any]:
    """Call ``Whoami`` on ``channel``; the decoded answer."""
    answer = await channel.unary_unary(WHOAMI, None, None)(b"", timeout=10)
    return cast(dict[str, Any], json.loads(answer))


def free_port() -> int:
    """A loopback port free at the time of the call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return cast(int, sock.getsockname()[1])


def _presented_serial(addr: str, service: str, client: TlsFiles) -> int:
    context = ssl.create_default_context(cafile=str(client.ca_file))
    context.load_cert_chain(str(client.cert_file), str(client.key_file))
    context.set_alpn_protocols(["h2"])
    host, _, port = addr.rpartition(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=dns_name(service)) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def presented_serial(addr: str, service: str, client: TlsFiles) -> int:
    """Serial of the certificate the server at ``addr`` presents to a new connection
    (a TLS handshake outside gRPC, checked against the CA and ``service``'s name)."""
    return await asyncio.to_thread(_presented_serial, addr, service, client)
