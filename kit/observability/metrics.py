"""Prometheus exposition for gRPC processes.

gRPC services serve ``/metrics`` on their own small HTTP port (the gateway serves it on its
main app). Metric objects themselves are defined next to the code that updates them, with
names starting ``webook_``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

logger = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` HTTP server."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(port: int, host: str = "127.0.0.1") -> MetricsEndpoint | None:
    """Serve the default registry on ``host:port`` (0 = any free port, -1 = disabled)."""
    if port < 0:
        return None
    server, thread = start_http_server(port, addr=host)
    endpoint = MetricsEndpoint(server, thread)
    logger.info("metrics endpoint listening", extra={"metrics_port": endpoint.port})
    return endpoint
