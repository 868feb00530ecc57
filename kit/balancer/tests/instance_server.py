"""A registered UserService instance in its own process, for kill/terminate tests.

Run ``python -m kit.balancer.tests.instance_server --etcd HOST:PORT --prefix P
--service user --instance-id ID --port PORT``. It listens, registers in etcd, and on
SIGTERM shuts down in the production order: deregister, wait ``--drain-delay`` for clients
to notice, then ``server.stop(--grace)``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from kit.balancer.tests.servers import ReportingUserService, start_server
from kit.registry import EtcdRegistry, EtcdRegistryConfig, ServiceInstance

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--etcd", required=True, help="etcd host:port")
    parser.add_argument("--prefix", required=True, help="registry key prefix")
    parser.add_argument("--service", default="user")
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--weight", type=int, default=1)
    parser.add_argument("--ttl", type=int, default=2)
    parser.add_argument("--drain-delay", type=float, default=1.0)
    parser.add_argument("--grace", type=float, default=5.0)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Listen, register, and wait for SIGTERM/SIGINT; then deregister, drain and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    server, addr = await start_server(ReportingUserService(args.instance_id), args.port)
    config = EtcdRegistryConfig(
        endpoint=args.etcd,
        prefix=args.prefix,
        ttl=args.ttl,
        backoff_initial=0.1,
        backoff_max=0.5,
    )
    instance = ServiceInstance(args.service, args.instance_id, addr, args.weight)
    async with EtcdRegistry(config) as registry:
        await registry.register(instance)
        await stop.wait()
        logger.info("stopping", extra={"instance_id": args.instance_id})
        await registry.deregister(instance)
        await asyncio.sleep(args.drain_delay)
        await server.stop(args.grace)
    logger.info("stopped", extra={"instance_id": args.instance_id})


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(parse_args()))


if __name__ == "__main__":
    main()
