"""The shared copy of the ranking in Redis, and the fencing token that guards writing it.

Two keys (the ranking user's Redis ACL allows ``webook:ranking:*``):

- ``webook:ranking:top``: the ranking's JSON (:func:`~services.ranking.domain.encode_ranking`)
  with an expiry, so that a job that stopped running lets the ranking lapse instead of
  serving it for ever (replicas still serve their memory copy while Redis is down);
- ``webook:ranking:fencing``: the highest fencing token accepted, without expiry.

Both updates are Lua scripts, so each is atomic against any other job run: a token lower than
the highest recorded is refused when the run starts (:meth:`RedisRankingStore.accept_token`)
and again when it writes its result (:meth:`RedisRankingStore.save`), so a holder that paused
after its check and woke after a newer run cannot overwrite the newer result. An equal token
is accepted: a retry of the same take.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis

from services.ranking.domain import Ranking, decode_ranking, encode_ranking
from services.ranking.errors import Reason, StaleFencingToken

RANKING_KEY: Final = "webook:ranking:top"
FENCING_KEY: Final = "webook:ranking:fencing"

# KEYS[1] fencing key; ARGV[1] token. Records the token unless a higher one is; returns the
# highest token recorded afterwards.
_ACCEPT = """
local highest = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if token < highest then return highest end
redis.call('SET', KEYS[1], ARGV[1])
return token
"""

# KEYS[1] fencing key, KEYS[2] ranking key; ARGV[1] token, ARGV[2] JSON, ARGV[3] expiry (ms).
# Writes the ranking unless a higher token was recorded; returns the highest token.
_SAVE = """
local highest = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if token < highest then return highest end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return token
"""


def _stale(token: int, highest: int) -> StaleFencingToken:
    return StaleFencingToken(
        Reason.STALE_FENCING_TOKEN,
        f"fencing token {token} is stale: token {highest} was already accepted",
        metadata={"fencing_token": str(token), "highest_token": str(highest)},
    )


class RedisRankingStore:
    """Reads and writes the ranking and the fencing token; Redis errors propagate."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._accept = redis.register_script(_ACCEPT)
        self._save = redis.register_script(_SAVE)

    async def accept_token(self, token: int) -> None:
        """Record ``token`` as the highest seen; :class:`StaleFencingToken` if one is higher."""
        highest = int(await self._accept(keys=[FENCING_KEY], args=[token]))
        if highest > token:
            raise _stale(token, highest)

    async def save(self, ranking: Ranking, *, token: int, ttl_ms: int) -> None:
        """Store ``ranking`` for ``ttl_ms`` unless a higher token was accepted meanwhile."""
        highest = int(
            await self._save(
                keys=[FENCING_KEY, RANKING_KEY], args=[token, encode_ranking(ranking), ttl_ms]
            )
        )
        if highest > token:
            raise _stale(token, highest)

    async def load(self) -> Ranking | None:
        """The stored ranking; ``None`` when absent (expired) or of another layout."""
        raw = await self._redis.get(RANKING_KEY)
        return None if raw is None else decode_ranking(raw)

    async def highest_token(self) -> int:
        """The highest fencing token accepted (0: none)."""
        raw = await self._redis.get(FENCING_KEY)
        return 0 if raw is None else int(raw)
