"""Which RPCs may be sent twice, as declared in the protos.

Each read or naturally idempotent write carries ``option idempotency_level =
NO_SIDE_EFFECTS`` or ``IDEMPOTENT`` in its ``.proto``; everything else (``Signup``,
``Publish``, ...) is sent exactly once. The balancer fails over only declared methods, so
the decision lives next to the API definition instead of in client configuration.
"""

from __future__ import annotations

from functools import lru_cache

from google.protobuf import descriptor_pb2, descriptor_pool

_UNKNOWN = descriptor_pb2.MethodOptions.IDEMPOTENCY_UNKNOWN


@lru_cache(maxsize=1024)
def declared_idempotent(full_method: str) -> bool:
    """Whether ``/package.Service/Method`` is declared safe to retry.

    The proto must already be loaded (importing its ``_pb2`` module, as any stub does).
    Unknown methods are not idempotent.
    """
    service, _, method = full_method.lstrip("/").partition("/")
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    except KeyError:
        return False
    return bool(descriptor.GetOptions().idempotency_level != _UNKNOWN)
