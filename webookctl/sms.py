"""``webookctl sms records``: the SMS send records, through the sms service's gRPC API.

``SmsService.ListSendRecords`` is the admin view of the records (numbers masked). Two checks
guard it, and the command needs what passes both:

- mutual TLS: the method's declared callers (its proto) are the identities whose certificate
  may call it, and that is only the operator's (``spiffe://webook/operator``; ``--tls-cert``/
  ``--tls-key`` with the CA, ``--tls-ca``). A local stack issues it as
  ``.run/pki/operator.pem`` and ``operator-key.pem`` (``devstack.tls``). No workload's
  certificate is accepted: the tool never borrows a service's identity;
- a caller token (``WEBOOKCTL_SMS_TOKEN``) of a caller with the admin flag, to see every
  caller's records: a static token from the service's ``callers`` setting, or a JWT from
  ``python -m services.sms issue-token --caller ops --templates '*' --admin``.

The service is found through etcd like any client (kit's balanced, governed channels), or
at ``--address``.
"""

from __future__ import annotations

import argparse
from typing import Any

from webook.sms.v1 import sms_pb2, sms_pb2_grpc
from webookctl.command import Context, command_group, leaf
from webookctl.errors import UsageError
from webookctl.output import Outcome, moment, table
from webookctl.remote import reported, service_clients

SMS = "sms"
STATUS_PREFIX = "SEND_STATUS_"
STATUSES = ("waiting", "sending", "sent", "failed")


def _record(record: sms_pb2.SendRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "caller": record.caller,
        "tpl_id": record.tpl_id,
        "numbers": list(record.numbers),
        "status": sms_pb2.SendStatus.Name(record.status).removeprefix(STATUS_PREFIX).lower(),
        "provider": record.provider,
        "attempts": record.attempts,
        "last_error": record.last_error,
        "ctime_ms": record.ctime_ms,
        "utime_ms": record.utime_ms,
        "latency_ms": record.latency_ms,
        "idempotency_key": record.idempotency_key,
    }


def _request(args: argparse.Namespace) -> sms_pb2.ListSendRecordsRequest:
    status = (
        sms_pb2.SendStatus.Value(STATUS_PREFIX + args.status.upper())
        if args.status
        else sms_pb2.SEND_STATUS_UNSPECIFIED
    )
    return sms_pb2.ListSendRecordsRequest(
        status=status,
        caller=args.caller or "",
        limit=args.limit,
        cursor=args.cursor,
        phone=args.phone or "",
        tpl_id=args.template or "",
        from_ms=args.from_ms,
        to_ms=args.to_ms,
    )


async def records(context: Context, args: argparse.Namespace) -> Outcome:
    """``sms records [filters]``: one page of send records, newest first."""
    settings = context.settings
    token = settings.sms_token.get_secret_value()
    if not token:
        raise UsageError("no SMS caller token: set WEBOOKCTL_SMS_TOKEN to an admin caller's token")
    request = _request(args)
    clients = service_clients(settings, SMS, args.address or settings.sms_address)
    try:
        async with reported(SMS, "ListSendRecords"):
            stub = sms_pb2_grpc.SmsServiceStub(await clients.channel(SMS))
            answer = await stub.ListSendRecords(
                request,
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=settings.timeout,
            )
    finally:
        await clients.close()
    found = [_record(r) for r in answer.records]
    rows = [
        [
            str(r["id"]),
            moment(r["ctime_ms"]),
            r["caller"],
            r["tpl_id"],
            ",".join(r["numbers"]),
            r["status"],
            r["provider"] or "-",
            str(r["attempts"]),
            r["last_error"] or "-",
        ]
        for r in found
    ]
    text = (
        table(
            [
                "ID",
                "CREATED",
                "CALLER",
                "TEMPLATE",
                "NUMBERS",
                "STATUS",
                "PROVIDER",
                "TRIES",
                "LAST ERROR",
            ],
            rows,
        )
        if rows
        else "no send records match"
    )
    if answer.next_cursor:
        text += f"\nmore: --cursor {answer.next_cursor}"
    return Outcome({"records": found, "next_cursor": answer.next_cursor}, text)


def register(subcommands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``sms records``."""
    group = command_group(subcommands, "sms", "the SMS platform's send records")
    parser = leaf(
        group,
        "records",
        "List SMS send records, newest first (numbers masked).\n\n"
        "Needs the operator certificate (a local stack's: .run/pki/operator.pem and\n"
        "operator-key.pem, with .run/pki/ca.pem) and an admin caller token in\n"
        "WEBOOKCTL_SMS_TOKEN.",
        records,
        common,
    )
    parser.add_argument("--status", choices=STATUSES)
    parser.add_argument("--caller", help="only this caller's records")
    parser.add_argument("--phone", help="only records sent to this number (as given to Send)")
    parser.add_argument("--template", metavar="TPL_ID", help="only this template")
    parser.add_argument("--from-ms", type=int, default=0, help="created at or after (Unix ms)")
    parser.add_argument("--to-ms", type=int, default=0, help="created before (Unix ms)")
    parser.add_argument("--limit", type=int, default=20, help="page size 1..100 (default 20)")
    parser.add_argument("--cursor", type=int, default=0, help="next page (from the last answer)")
    parser.add_argument(
        "--address", metavar="HOST:PORT[,...]", help="the sms service (default: etcd discovery)"
    )
