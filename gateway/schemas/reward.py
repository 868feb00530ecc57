"""Models of the reward, payment-notification and account routes (the original front end's
field names: ``id``, ``amt``, ``codeURL``, ``rid``).

Money is an integer number of fen (分, 1/100 yuan), never a float: the front end's "reward
one cent" sends ``amt: 1``. The edge refuses a non-positive or non-int64 amount; the reward
service applies its own (live) bounds, 1 to 100000 fen by default, and refuses the rest
with a message naming them.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, Field

from gateway.schemas import INT64_MAX, RequestModel

RewardStatusText = Literal[
    "RewardStatusUnknown", "RewardStatusInit", "RewardStatusPayed", "RewardStatusFailed"
]
"""A reward's status as the front end compares it (``RewardStatusPayed`` once paid)."""
UNKNOWN_STATUS: Final = "RewardStatusUnknown"
ActivityText = Literal["reward", "reward_platform_share", "unknown"]
"""Why an account's balance moved: an author's share of a reward, the platform's share."""


class RewardArticleRequest(RequestModel):
    """Reward the author of published article ``id`` with ``amt`` fen."""

    id: Annotated[int, Field(ge=1, le=INT64_MAX, description="The published article.")]
    amt: Annotated[
        int,
        Field(ge=1, le=INT64_MAX, description="The amount in fen (1 = one cent, 0.01 yuan)."),
    ]


class RewardDetailRequest(RequestModel):
    """The status of one of the caller's own rewards."""

    rid: Annotated[int, Field(ge=1, le=INT64_MAX, description="The reward id of PreReward.")]


class RewardCodeView(BaseModel):
    """What the front end shows to pay: the QR code's content, and the id to poll."""

    codeURL: str = Field(description="WeChat Pay's code URL (weixin://...): show it as a QR code.")
    rid: int = Field(description="The reward id, for /reward/detail.")


class AccountActivityView(BaseModel):
    """One ledger row of the caller's account."""

    bizKey: str = Field(description='What the credit is for, e.g. "reward:42".')
    amount: int = Field(description="Fen credited (0 or more).")
    type: ActivityText
    time: str = Field(description="When it happened, YYYY-MM-DD HH:MM:SS in the server's zone.")


class AccountView(BaseModel):
    """The caller's balance and latest ledger rows."""

    balance: int = Field(description="The balance in fen; 0 for a user never credited.")
    recent: list[AccountActivityView] = Field(description="The newest rows first (at most 20).")
