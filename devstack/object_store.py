"""A local S3-compatible object store for the broker's data: ``python -m devstack.object_store``.

tansu keeps topics, records and consumer-group offsets in an object store when started with
an ``s3://`` storage engine, and needs two things of it: path-style requests against a
custom endpoint and conditional PUTs (``If-None-Match: *`` to create an object only if it
is absent, ``If-Match: <etag>`` to replace it only if nobody changed it since), with which
it updates its metadata without a lock. moto's S3 emulation (the ``moto`` wheel) answers
both, so a fresh machine needs nothing but PyPI. This module serves moto's S3 on loopback
(``--port``) and creates the bucket the broker writes to (``--bucket``); the launcher
(:func:`devstack.infra.object_store_process`) calls it ready once that bucket answers, and
starts tansu only then.

Objects live in this process's memory: the broker can be restarted (or killed) as often as
wanted without losing an acknowledged record, but stopping this process drops everything,
as stopping the whole local stack always did. Request logging is off (the broker polls the
store while its consumers poll the broker); errors still reach the log.

Two things of moto's emulation are adjusted here, both for what tansu relies on:

- **One request at a time** (:class:`OneAtATime`). moto checks a conditional PUT's ETag,
  then writes, with nothing to stop a concurrent PUT of the same object in between; tansu's
  metadata updates (a partition's high watermark, the consumer groups) are only safe if
  exactly one of two racing PUTs wins, as on S3.
- **Listing times to the microsecond** (:func:`precise_listing_times`). tansu answers a
  "latest offset" request with the record batch whose object was modified last; S3 lists
  those times to the second, so after a restart batches written within one second tie and
  tansu answered an older offset (a consumer's end offset, a lag figure, came out short).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import datetime
from types import FrameType
from typing import Any

from moto.core.serialize import S3Serializer, TimestampSerializer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3.models import FakeKey
from werkzeug.serving import make_server

from kit.logging import configure_logging

logger = logging.getLogger("devstack.object_store")


class QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without werkzeug's line per request (errors are kept)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing for a request that was answered; failures go through ``log_error``."""
        return


class OneAtATime:
    """A WSGI app that lets one request at a time into another (moto's).

    The whole answer is built under the lock, so a conditional PUT's check and its write
    are one step for every other request. The answers are small (record batches, metadata
    documents), and moto holds the interpreter lock while it works anyway.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """Answer one request, the only one inside moto until it is done."""
        with self._lock:
            return list(self._app(environ, start_response))


def _microsecond_iso8601(key: FakeKey) -> str:
    modified: datetime = key.last_modified
    return modified.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def precise_listing_times() -> None:
    """Have moto list an object's last-modified time to the microsecond, not the second.

    Both the time a key hands the serializer and the format the serializer writes it in
    drop the fraction; ISO 8601 with one is what S3 clients parse anyway (S3 itself sends
    ``.000``).
    """
    FakeKey.last_modified_ISO8601 = property(_microsecond_iso8601)  # type: ignore[assignment,method-assign]
    S3Serializer.DEFAULT_TIMESTAMP_FORMAT = TimestampSerializer.TIMESTAMP_FORMAT_ISO8601


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create ``bucket`` at ``endpoint`` if it is missing (an existing one is kept).

    moto accepts unsigned requests, so a plain PUT does; it answers 200 for a bucket that
    already exists in its default region.
    """
    request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"creating bucket {bucket!r} answered {response.status}")


def serve(host: str, port: int, bucket: str) -> None:
    """Serve S3 on ``host:port`` with ``bucket`` created, until SIGTERM or SIGINT."""
    precise_listing_times()
    app = OneAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(target=server.serve_forever, name="object-store", daemon=True)
    serving.start()
    try:
        create_bucket(f"http://{host}:{port}", bucket)
        logger.info("object store ready", extra={"address": f"{host}:{port}", "bucket": bucket})
        stop.wait()
    finally:
        server.shutdown()
        serving.join(timeout=5)
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    """Run the object store until stopped."""
    parser = argparse.ArgumentParser(prog="python -m devstack.object_store", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", default="tansu")
    args = parser.parse_args(argv)
    configure_logging("object-store")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        serve(args.host, args.port, args.bucket)
    except (OSError, urllib.error.URLError, RuntimeError) as exc:
        logger.error("object store failed", extra={"error": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
