"""The read path over mutual TLS: ``python -m bench.read_path --mtls``, as its own benchmark.

Every gRPC hop of the stack and of its floor runs over mutual TLS with certificates from one
local CA, as in production; the goal is ``bench.read_path.MTLS_GOAL`` of the floor.
"""

from __future__ import annotations

import sys

from bench.read_path import main

if __name__ == "__main__":
    sys.exit(main(["--mtls"]))
