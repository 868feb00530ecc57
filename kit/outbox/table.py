"""The outbox table: one model per service, in the service's own metadata.

Each service that records events transactionally adds an outbox table to its declarative
base with :func:`outbox_model` (its own table name, so that services sharing a database in
small deployments and in the test suite never mix their events), and creates it in one of
its Alembic revisions with :func:`kit.outbox.migration.create_outbox_table_v1`.

A row is one event: its topic, ordering key, serialised payload and trace headers, plus
what the relay needs: ``attempts``/``next_attempt_ms`` (back-off), ``claimed_by``/
``claimed_until`` (a lease, so several relays never publish a row at once) and ``sent_ms``
(``NULL`` while pending; sent rows are deleted after the retention period). Indexes serve
the relay's scan in id order of pending rows (``sent_ms, id``) and its per-key order check
(``event_key, id``).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from kit.sql import big_id, exact_string, table_args

TOPIC_LENGTH = 255
KEY_LENGTH = 255
CLAIM_LENGTH = 64
ERROR_LENGTH = 512


def payload_type() -> TypeEngine[bytes]:
    """``BLOB`` (SQLite) / ``MEDIUMBLOB`` (MySQL, MariaDB): payloads up to 16 MB (an article's
    content travels in its event)."""
    return LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


class OutboxRow:
    """The columns of an outbox table (a mixin: :func:`outbox_model` maps it per service).

    ``event_key`` is the record key (the ordering key, e.g. the article id), ``headers`` the
    trace context as a JSON object of text values.
    """

    id: Mapped[int] = mapped_column(big_id(), primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(TOPIC_LENGTH))
    event_key: Mapped[str] = mapped_column(exact_string(KEY_LENGTH))
    payload: Mapped[bytes] = mapped_column(payload_type())
    headers: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger)
    claimed_by: Mapped[str | None] = mapped_column(String(CLAIM_LENGTH))
    claimed_until: Mapped[int | None] = mapped_column(BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))


def outbox_indexes(table_name: str) -> tuple[Index, Index]:
    """The relay's indexes, named as the shared naming convention would name them."""
    return (
        Index(f"ix_{table_name}_sent_ms_id", "sent_ms", "id"),
        Index(f"ix_{table_name}_event_key_id", "event_key", "id"),
    )


def outbox_model(base: type[DeclarativeBase], table_name: str) -> type[OutboxRow]:
    """A mapped outbox class named ``table_name`` in ``base``'s metadata.

    Call it once per service, at import of the module defining ``base``::

        ArticleOutboxRow = outbox_model(Base, "article_outbox")
    """
    class_name = "".join(part.title() for part in table_name.split("_")) + "Row"
    namespace = {
        "__tablename__": table_name,
        "__table_args__": table_args(*outbox_indexes(table_name)),
        "__doc__": f"An event of the ``{table_name}`` outbox (see :mod:`kit.outbox`).",
    }
    return cast("type[OutboxRow]", type(class_name, (OutboxRow, base), namespace))
