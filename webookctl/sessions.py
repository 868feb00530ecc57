"""``webookctl sessions revoke``: log sessions out, as the gateway's logout does.

The gateway keeps revocations, not sessions (:mod:`gateway.auth.sessions`): a session id
(``ssid``, in every token of a session) is revoked by writing its key in Redis and
announcing it on the revocation channel, in one transaction, so that every gateway process
refuses the session's tokens within milliseconds. This command does exactly that with the
gateway's own :class:`~gateway.auth.sessions.SessionRevocations`, for the session ids given
(a user reports a stolen device; the id is in the gateway's logs of their requests).

A user's sessions cannot be revoked by user id: the gateway records no list of the sessions
a user holds (a login writes nothing, by design), so ``--user`` fails and says so. Doing it
needs the gateway to keep a per-user mark ("tokens of this user issued before T are
refused") that its session check reads; that is the gateway's change to make, not a key
format this tool may invent.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from gateway.auth.sessions import SessionRevocations, SessionStoreUnavailable
from gateway.settings import GatewaySettings
from webookctl import schemas
from webookctl.command import Context, command_group, leaf
from webookctl.errors import CommandFailed, UsageError
from webookctl.output import Outcome


def _where(url: str) -> str:
    """The Redis URL without its credentials, fit for a message."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


def default_ttl() -> timedelta:
    """How long a revocation is kept by default: the gateway's default refresh lifetime."""
    defaults = schemas.defaults_of(GatewaySettings)
    assert isinstance(defaults, GatewaySettings)
    return defaults.refresh_ttl


async def revoke(context: Context, args: argparse.Namespace) -> Outcome:
    """``sessions revoke --session SSID... | --user ID``."""
    if args.user is not None:
        raise CommandFailed(
            f"cannot revoke the sessions of user {args.user}: the gateway records revoked "
            "session ids only, not which sessions a user holds; revoke them with "
            "--session SSID"
        )
    ssids = list(dict.fromkeys(args.sessions))
    if any(not s.strip() for s in ssids):
        raise UsageError("a session id must not be empty")
    ttl = timedelta(days=args.ttl_days) if args.ttl_days else default_ttl()
    url = context.settings.redis_url
    client = aioredis.Redis.from_url(url)
    # The feed is never started: revocations are written with their announcement (the
    # transaction the gateway's own logout uses), and nothing here checks sessions.
    store = SessionRevocations(client, ttl=ttl, on_error="deny", feed=True)
    revoked: list[str] = []
    try:
        for ssid in ssids:
            await store.revoke(ssid)
            revoked.append(ssid)
    except SessionStoreUnavailable as exc:
        cause = exc.__cause__ or exc
        raise CommandFailed(
            f"session store {_where(url)}: {type(cause).__name__}: {cause}; revoked "
            f"{len(revoked)} of {len(ssids)} before it failed"
        ) from exc
    finally:
        await client.aclose()
    text = "\n".join(
        f"revoked session {ssid} (kept {ttl.days} d {ttl.seconds // 3600} h)" for ssid in revoked
    )
    return Outcome({"revoked": revoked, "ttl_seconds": int(ttl.total_seconds())}, text)


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``sessions revoke``."""
    group = command_group(subcommands, "sessions", "users' login sessions (the gateway's)")
    parser = leaf(
        group,
        "revoke",
        "Revoke sessions: every token of each session is refused by every gateway.\n\n"
        "By session id (--session, repeatable). By user (--user) the gateway has no\n"
        "record to go on yet: the command fails and says so.",
        revoke,
        common,
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--session", dest="sessions", action="append", metavar="SSID", help="a session id"
    )
    who.add_argument("--user", type=int, metavar="ID", help="every session of this user")
    parser.add_argument(
        "--ttl-days",
        type=float,
        metavar="DAYS",
        help="keep the revocation this long: at least the gateway's refresh_ttl "
        "(default: its default, 7 days)",
    )
