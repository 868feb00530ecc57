"""``webookctl sessions revoke``: log sessions out, as the gateway's logout does.

The gateway keeps revocations, not sessions (:mod:`gateway.auth.sessions`): a session id
(``ssid``, in every token of a session) is revoked by writing its key in Redis and
announcing it on the revocation channel, in one transaction, so that every gateway process
refuses the session's tokens within milliseconds. This command does exactly that with the
gateway's own :class:`~gateway.auth.sessions.SessionRevocations`, for the session ids given
(a user reports a stolen device; the id is in the gateway's logs of their requests).

By user (``--user ID``): the gateway records no list of the sessions a user holds (a login
writes nothing, by design); instead its session check reads a per-user mark, "tokens of
this user issued at or before T are refused", which this command writes and announces with
:meth:`~gateway.auth.sessions.SessionRevocations.revoke_user` (T: now). Every session the
user holds ends; the user may log in again at once (from the next second on).
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
from webookctl.output import Outcome, moment


def _where(url: str) -> str:
    """The Redis URL without its credentials, fit for a message."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


def default_ttl() -> timedelta:
    """How long a revocation is kept by default: the gateway's default refresh lifetime."""
    defaults = schemas.defaults_of(GatewaySettings)
    assert isinstance(defaults, GatewaySettings)
    return defaults.refresh_ttl


def _kept(ttl: timedelta) -> str:
    return f"kept {ttl.days} d {ttl.seconds // 3600} h"


async def revoke(context: Context, args: argparse.Namespace) -> Outcome:
    """``sessions revoke --session SSID... | --user ID``."""
    if args.user is not None and args.user < 1:
        raise UsageError("a user id is a positive number")
    ttl = timedelta(days=args.ttl_days) if args.ttl_days else default_ttl()
    url = context.settings.redis_url
    client = aioredis.Redis.from_url(url)
    # The feed is never started: revocations are written with their announcement (the
    # transaction the gateway's own logout uses), and nothing here checks sessions.
    store = SessionRevocations(client, ttl=ttl, on_error="deny", feed=True)
    if args.user is not None:
        return await _revoke_user(store, client, args.user, ttl, url)
    ssids = list(dict.fromkeys(args.sessions))
    if any(not s.strip() for s in ssids):
        await client.aclose()
        raise UsageError("a session id must not be empty")
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
    text = "\n".join(f"revoked session {ssid} ({_kept(ttl)})" for ssid in revoked)
    return Outcome({"revoked": revoked, "ttl_seconds": int(ttl.total_seconds())}, text)


async def _revoke_user(
    store: SessionRevocations, client: aioredis.Redis, uid: int, ttl: timedelta, url: str
) -> Outcome:
    """Every session of ``uid``: the gateway's per-user mark, now."""
    try:
        before = await store.revoke_user(uid)
    except SessionStoreUnavailable as exc:
        cause = exc.__cause__ or exc
        raise CommandFailed(
            f"session store {_where(url)}: {type(cause).__name__}: {cause}; the sessions of "
            f"user {uid} were not revoked"
        ) from exc
    finally:
        await client.aclose()
    return Outcome(
        {"user": uid, "revoked_before": before, "ttl_seconds": int(ttl.total_seconds())},
        f"revoked every session of user {uid} issued up to "
        f"{moment(int(before * 1000))} ({_kept(ttl)})",
    )


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``sessions revoke``."""
    group = command_group(subcommands, "sessions", "users' login sessions (the gateway's)")
    parser = leaf(
        group,
        "revoke",
        "Revoke sessions: every token of each session is refused by every gateway.\n\n"
        "By session id (--session, repeatable), or every session of a user (--user):\n"
        "their tokens issued until now are refused; the user may log in again.",
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
