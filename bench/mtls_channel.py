"""Benchmark of mutual TLS: a BalancedChannel over mTLS against the same over plaintext.

Run ``python -m bench.mtls_channel``. One grpc.aio echo server runs in a subprocess and
listens twice: in plaintext, and with mutual TLS (certificates from the local CA,
:func:`kit.security.pki.ensure_local_pki`, in a temporary directory). 64 concurrent callers
make unary calls for a few seconds through a ``BalancedChannel`` over each port, in
alternating rounds; the median of the per-round ratios mTLS / plaintext is printed (goal:
>= 0.85). Connections are made before measuring, so this is the steady-state cost of
encryption per call, not of handshakes. The machine may be shared: read the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from bench._report import result
from bench.balancer import CALLERS, measure
from devstack.infra import ManagedProcess, free_port, port_in_use
from kit.balancer import BalancedChannel, BalancerConfig, static_balanced_channel
from kit.security.pki import Pki, ensure_local_pki
from kit.security.tls import ClientTls, ServerTls, TlsFiles, mtls_channel_factory

METHOD = "/bench.Echo/Echo"
SERVER = "bench-echo"
CLIENT = "bench-client"
ROUNDS = 8
ROUND_SECONDS = 1.0
GOAL = 0.85
REPO_ROOT = Path(__file__).resolve().parents[1]


def _files(pki: Pki, name: str) -> TlsFiles:
    cert, key = pki.files(name)
    return TlsFiles(cert, key, pki.ca_file)


async def serve(plain_port: int, tls_port: int, pki_dir: Path) -> None:
    """The echo server on both ports (subprocess mode)."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{plain_port}")
    tls = ServerTls(_files(Pki(pki_dir), SERVER))
    server.add_secure_port(f"127.0.0.1:{tls_port}", tls.credentials)
    await server.start()
    await server.wait_for_termination()


async def throughput(plain_addr: str, tls_addr: str, pki: Pki) -> None:
    """BalancedChannel over plaintext vs over mutual TLS, against the same server process."""
    config = BalancerConfig(idempotent_methods=frozenset({METHOD}))
    factory = mtls_channel_factory(SERVER, ClientTls(_files(pki, CLIENT)))
    plain: BalancedChannel = await static_balanced_channel(SERVER, [plain_addr], config)
    secure: BalancedChannel = await static_balanced_channel(
        SERVER, [tls_addr], config, channel_factory=factory
    )
    async with plain, secure:
        await plain.channel_ready()
        await secure.channel_ready()
        plain_echo = plain.unary_unary(METHOD, None, None)
        secure_echo = secure.unary_unary(METHOD, None, None)

        def via_plain() -> Awaitable[object]:
            return plain_echo(b"ping", timeout=5)

        def via_tls() -> Awaitable[object]:
            return secure_echo(b"ping", timeout=5)

        await measure(via_plain, 0.5)  # warm-up
        await measure(via_tls, 0.5)
        ratios: list[float] = []
        plain_rates: list[float] = []
        tls_rates: list[float] = []
        rounds: list[tuple[Callable[[], Awaitable[object]], list[float]]]
        for round_no in range(ROUNDS):
            # Alternate which goes first so that drifting background load cancels out.
            rounds = [(via_plain, plain_rates), (via_tls, tls_rates)]
            if round_no % 2:
                rounds.reverse()
            for call, rates in rounds:
                rates.append((await measure(call, ROUND_SECONDS))[0])
            ratios.append(tls_rates[-1] / plain_rates[-1])
            print(
                f"round {round_no + 1}: plaintext {plain_rates[-1]:6.0f} calls/s, "
                f"mTLS {tls_rates[-1]:6.0f} calls/s, ratio {ratios[-1]:.3f}"
            )
    ratio = statistics.median(ratios)
    print(
        f"throughput ratio BalancedChannel over mTLS / over plaintext ({CALLERS} callers): "
        f"{ratio:.3f} (median of {ROUNDS} rounds; goal >= {GOAL})"
    )
    result(
        f"BalancedChannel over mTLS vs plaintext, {CALLERS} callers",
        f"{statistics.median(tls_rates):.0f} calls/s",
        f"{statistics.median(plain_rates):.0f} calls/s",
        ratio,
        f">= {GOAL}",
        ratio >= GOAL,
    )


def main() -> None:
    """Make the certificates, start the server subprocess, measure, print, stop it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=int, nargs=2, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve[0], args.serve[1], args.pki))
        return
    plain_port, tls_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as scratch:
        pki = ensure_local_pki(Path(scratch) / "pki", [SERVER, CLIENT])
        command = [sys.executable, "-m", "bench.mtls_channel", "--serve"]
        server = ManagedProcess(
            "bench-echo-server",
            [*command, str(plain_port), str(tls_port), "--pki", str(pki.directory)],
            Path(scratch) / "server.log",
            ready=lambda: port_in_use(plain_port) and port_in_use(tls_port),
            cwd=REPO_ROOT,
        )
        with server:
            asyncio.run(throughput(f"127.0.0.1:{plain_port}", f"127.0.0.1:{tls_port}", pki))


if __name__ == "__main__":
    main()
