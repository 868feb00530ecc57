"""In-process rate limiting primitives.

``TokenBucket`` is the building block shared by the gRPC server rate limit interceptor
(``kit.governance.ratelimit``) and the HTTP rate limit middleware.
"""

from kit.ratelimit.token_bucket import Clock, TokenBucket

__all__ = ["Clock", "TokenBucket"]
