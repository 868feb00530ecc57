"""The fencing-token metadata: what a caller sends, what a callee accepts, and how a caller
recognises a stale-token refusal whatever the callee's error domain."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from kit.errors import FailedPrecondition, Unavailable
from kit.grpcx.errors import rich_status_metadata
from kit.grpcx.fencing import (
    FENCING_TOKEN_METADATA,
    JOB_METADATA,
    MalformedFencingToken,
    call_token,
    fencing_metadata,
    fencing_token,
    is_stale_token_refusal,
    job_name,
)


class Context:
    """The part of a servicer context the helpers read: the invocation metadata."""

    def __init__(self, *metadata: tuple[str, str | bytes]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata


def read(*metadata: tuple[str, str | bytes]) -> int | None:
    context: Any = Context(*metadata)
    return fencing_token(context)


def test_the_metadata_a_caller_sends_is_what_a_callee_reads() -> None:
    sent = fencing_metadata(42, "ranking.refresh")
    assert sent == ((FENCING_TOKEN_METADATA, "42"), (JOB_METADATA, "ranking.refresh"))
    context: Any = Context(("user-agent", "x"), *sent)
    assert fencing_token(context) == 42
    assert job_name(context) == "ranking.refresh"


def test_no_token_is_none_and_the_same_value_twice_is_one() -> None:
    assert read() is None
    assert read(("other", "1")) is None
    assert read((FENCING_TOKEN_METADATA, "7"), (FENCING_TOKEN_METADATA, "7")) == 7
    assert read((FENCING_TOKEN_METADATA, str(2**63 - 1))) == 2**63 - 1
    empty: Any = Context()
    assert job_name(empty) == ""


@pytest.mark.parametrize(
    "value", ["", "0", "-1", "+1", "1.5", "abc", " 1", "١٢", str(2**63), "9" * 20, b"\x01"]
)
def test_a_malformed_token_is_refused(value: str | bytes) -> None:
    with pytest.raises(MalformedFencingToken, match=FENCING_TOKEN_METADATA):
        read((FENCING_TOKEN_METADATA, value))


def test_two_different_tokens_are_refused() -> None:
    with pytest.raises(MalformedFencingToken, match="different values"):
        read((FENCING_TOKEN_METADATA, "7"), (FENCING_TOKEN_METADATA, "8"))


def rpc_error(code: grpc.StatusCode, trailing: tuple[tuple[str, bytes], ...] = ()) -> Any:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), "refused", None
    )


def test_a_stale_token_refusal_is_failed_precondition_with_the_reason_suffix() -> None:
    stale = FailedPrecondition("RANKING_STALE_FENCING_TOKEN", "stale", domain="ranking.webook")
    assert is_stale_token_refusal(
        rpc_error(grpc.StatusCode.FAILED_PRECONDITION, rich_status_metadata(stale))
    )
    other = FailedPrecondition("ARTICLE_NOT_PUBLISHED", "no", domain="article.webook")
    assert not is_stale_token_refusal(
        rpc_error(grpc.StatusCode.FAILED_PRECONDITION, rich_status_metadata(other))
    )
    # The reason under another status is not the contract's refusal.
    odd = Unavailable("X_STALE_FENCING_TOKEN", "down", domain="x.webook")
    assert not is_stale_token_refusal(
        rpc_error(grpc.StatusCode.UNAVAILABLE, rich_status_metadata(odd))
    )
    assert not is_stale_token_refusal(rpc_error(grpc.StatusCode.FAILED_PRECONDITION))


class Refused(Exception):
    """What ``call_token``'s ``refuse`` makes in these tests: the message and the field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def test_a_call_token_comes_from_the_metadata_or_the_field_and_both_must_agree() -> None:
    in_metadata: Any = Context((FENCING_TOKEN_METADATA, "7"))
    neither: Any = Context()
    assert call_token(in_metadata, 0, Refused) == 7
    assert call_token(in_metadata, 7, Refused) == 7
    assert call_token(neither, 5, Refused) == 5
    assert call_token(neither, 0, Refused) == 0
    with pytest.raises(Refused, match="differs") as differs:
        call_token(in_metadata, 8, Refused)
    assert differs.value.field == "fencing_token"
    malformed: Any = Context((FENCING_TOKEN_METADATA, "seven"))
    with pytest.raises(Refused) as bad:
        call_token(malformed, 0, Refused)
    assert bad.value.field == FENCING_TOKEN_METADATA
