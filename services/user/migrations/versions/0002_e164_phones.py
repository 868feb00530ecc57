"""Store phones in E.164 only: ``13900000003`` becomes ``+8613900000003``.

Phones were stored as sent, so one number could be two accounts. The service now keys
accounts by the E.164 form; this rewrites the older 11-digit mainland rows (before this
revision only ``1[3-9]`` + 9 digits or ``+…`` were accepted, so every phone without ``+`` is a
mainland number) so that their owners still log in to the same account.

If both forms of a number already belong to two accounts, nothing is rewritten and the
upgrade stops, naming the pairs of user ids: which account keeps the phone (and whether to
merge them) is a decision for a person, since the accounts' articles, follows and
interactions live in other services. Resolve each pair (e.g. set the phone of one of them
to NULL), then upgrade again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_users = sa.table("users", sa.column("id", sa.BigInteger()), sa.column("phone", sa.String(32)))


def _e164(phone: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    return sa.literal("+86", sa.String(32)) + phone


def upgrade() -> None:
    """Rewrite mainland phones to ``+86…``, or stop if that would merge two accounts."""
    legacy = _users.alias("legacy")
    taken = _users.alias("taken")
    clashes = (
        op.get_bind()
        .execute(
            sa.select(legacy.c.id, taken.c.id)
            .join(taken, taken.c.phone == _e164(legacy.c.phone))
            .where(sa.not_(legacy.c.phone.startswith("+")))
            .order_by(legacy.c.id)
        )
        .all()
    )
    if clashes:
        pairs = ", ".join(f"{old} and {new}" for old, new in clashes)
        raise RuntimeError(
            "cannot store phones in E.164: these accounts have the same phone in two forms "
            f"(user ids {pairs}); decide which account keeps it, clear the other's phone, "
            "then upgrade again"
        )
    phone = _users.c.phone
    op.execute(_users.update().where(sa.not_(phone.startswith("+"))).values(phone=_e164(phone)))


def downgrade() -> None:
    """Nothing to undo: the old code accepts E.164 phones as they are."""
