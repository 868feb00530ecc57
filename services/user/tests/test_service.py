"""Unit tests of :class:`UserService` on in-memory fakes: rules, normalisation, error reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import bcrypt
import pytest

from kit.errors import AppError, ErrorKind
from services.user.domain import NewUser, WechatInfo
from services.user.errors import DOMAIN, Reason
from services.user.service import UserService
from services.user.tests.fakes import FakeUnitOfWork, InMemoryUserStore

NOW = datetime(2024, 3, 10, 23, 30, tzinfo=UTC)
TODAY = NOW.date()
GOOD_PASSWORD = "hello#123"


@pytest.fixture
def store() -> InMemoryUserStore:
    """The fake database."""
    return InMemoryUserStore()


@pytest.fixture
def service(store: InMemoryUserStore) -> UserService:
    """A service on the fake store with a fixed clock and the cheapest bcrypt cost."""
    return UserService(lambda: FakeUnitOfWork(store), bcrypt_cost=4, clock=lambda: NOW)


def fullwidth(text: str) -> str:
    """``text`` with its ASCII digits replaced by full-width digits (U+FF10..U+FF19)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in text)


def assert_refused(error: AppError, kind: ErrorKind, reason: Reason) -> None:
    """``error`` has the expected kind, reason and domain, and a message for people."""
    assert (error.kind, error.reason, error.domain) == (kind, reason, DOMAIN)
    assert error.message


# --- signup -------------------------------------------------------------------------------


async def test_signup_normalises_email_and_stores_a_bcrypt_hash(
    service: UserService, store: InMemoryUserStore
) -> None:
    user = await service.signup("  Alice.Smith@Example.COM ", GOOD_PASSWORD)

    assert user.email == "alice.smith@example.com"
    stored = store.users[user.id]
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$2b$04$")
    assert bcrypt.checkpw(GOOD_PASSWORD.encode(), stored.password_hash.encode())
    assert user.ctime_ms == user.utime_ms == int(NOW.timestamp() * 1000)


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "plainaddress",
        "a@b",
        "a..b@example.com",
        "a b@example.com",
        "a@x.test",
        "a" * 250 + "@example.com",
        "a@" + "b" * 1_000_000 + ".com",
    ],
)
async def test_signup_refuses_invalid_email(service: UserService, email: str) -> None:
    with pytest.raises(AppError) as caught:
        await service.signup(email, GOOD_PASSWORD)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_EMAIL)
    assert caught.value.metadata["field"] == "email"


@pytest.mark.parametrize(
    "password",
    [
        "",
        "a1#",  # too short
        "abc#1234"[:7],  # 7 characters
        "abcdefgh#",  # no digit
        "12345678#",  # no letter
        "abcd12345",  # no special character
        "abcd 1234",  # a space is not a special character
    ],
)
async def test_signup_refuses_weak_password(service: UserService, password: str) -> None:
    with pytest.raises(AppError) as caught:
        await service.signup("bob@example.com", password)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.WEAK_PASSWORD)


@pytest.mark.parametrize("password", ["abcd#123", "密码真的很安全1!", "Pässwörd#9"])
async def test_signup_accepts_strong_password(service: UserService, password: str) -> None:
    user = await service.signup("carol@example.com", password)
    assert user.id > 0


async def test_signup_accepts_72_bytes_and_refuses_73_without_truncating(
    service: UserService,
) -> None:
    at_limit = "a1#" + "x" * 69
    assert len(at_limit.encode()) == 72
    await service.signup("dave@example.com", at_limit)

    too_long = "a1#" + "密" * 24  # 3 + 72 bytes
    with pytest.raises(AppError) as caught:
        await service.signup("erin@example.com", too_long)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.PASSWORD_TOO_LONG)
    assert caught.value.metadata["max_bytes"] == "72"


async def test_signup_refuses_a_taken_email_whatever_its_case(
    service: UserService, store: InMemoryUserStore
) -> None:
    await service.signup("frank@example.com", GOOD_PASSWORD)
    with pytest.raises(AppError) as caught:
        await service.signup("FRANK@example.com", GOOD_PASSWORD)
    assert_refused(caught.value, ErrorKind.ALREADY_EXISTS, Reason.EMAIL_TAKEN)
    assert len(store.users) == 1


# --- login --------------------------------------------------------------------------------


async def test_login_with_right_password_any_email_case(service: UserService) -> None:
    created = await service.signup("grace@example.com", GOOD_PASSWORD)
    assert await service.login(" Grace@Example.com", GOOD_PASSWORD) == created


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("heidi@example.com", "wrong#123"),  # wrong password
        ("nobody@example.com", GOOD_PASSWORD),  # unknown email
        ("not an email", GOOD_PASSWORD),
        ("heidi@example.com", ""),
        ("heidi@example.com", "x" * 73),
    ],
)
async def test_login_refusals_are_indistinguishable(
    service: UserService, email: str, password: str
) -> None:
    await service.signup("heidi@example.com", GOOD_PASSWORD)
    with pytest.raises(AppError) as caught:
        await service.login(email, password)
    assert_refused(caught.value, ErrorKind.UNAUTHENTICATED, Reason.INVALID_CREDENTIALS)
    assert caught.value.message == "wrong email or password"


async def test_login_refuses_accounts_without_password(
    service: UserService, store: InMemoryUserStore
) -> None:
    store.insert(NewUser(email="ivan@example.com", password_hash=None))
    with pytest.raises(AppError) as caught:
        await service.login("ivan@example.com", GOOD_PASSWORD)
    assert_refused(caught.value, ErrorKind.UNAUTHENTICATED, Reason.INVALID_CREDENTIALS)


# --- profile ------------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", [0, -1, 999])
async def test_profile_of_unknown_user(service: UserService, user_id: int) -> None:
    with pytest.raises(AppError) as caught:
        await service.profile(user_id)
    assert_refused(caught.value, ErrorKind.NOT_FOUND, Reason.NOT_FOUND)


async def test_profile_of_known_user(service: UserService, store: InMemoryUserStore) -> None:
    user = store.insert(NewUser(phone="13800000000"))
    assert await service.profile(user.id) == user


# --- update non-sensitive info -----------------------------------------------------------


async def _edit(
    service: UserService, user_id: int, *, nickname: str = "", birthday: str = "", about: str = ""
) -> object:
    return await service.update_non_sensitive_info(
        user_id, nickname=nickname, birthday=birthday, about_me=about
    )


@pytest.mark.parametrize(
    ("birthday", "expected"),
    [
        ("", None),
        ("1900-01-01", date(1900, 1, 1)),
        ("2000-02-29", date(2000, 2, 29)),
        (TODAY.isoformat(), TODAY),
        ((TODAY + timedelta(days=1)).isoformat(), TODAY + timedelta(days=1)),
    ],
)
async def test_edit_accepts_valid_birthdays(
    service: UserService, store: InMemoryUserStore, birthday: str, expected: date | None
) -> None:
    user = store.insert(NewUser(phone="13800000001"))
    updated = await service.update_non_sensitive_info(
        user.id, nickname="Ann", birthday=birthday, about_me="hi"
    )
    assert updated.birthday == expected
    assert store.users[user.id].user.birthday == expected


@pytest.mark.parametrize(
    "birthday",
    [
        (TODAY + timedelta(days=2)).isoformat(),
        "2023-02-30",
        "2023-02-29",
        "2024-13-01",
        "1899-12-31",
        "2000-1-1",
        "20000101",
        "2000-01-01T00:00:00",
        "yesterday",
        fullwidth("2000-01-01"),
    ],
)
async def test_edit_refuses_invalid_birthdays(
    service: UserService, store: InMemoryUserStore, birthday: str
) -> None:
    user = store.insert(NewUser(phone="13800000002"))
    with pytest.raises(AppError) as caught:
        await _edit(service, user.id, birthday=birthday)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_BIRTHDAY)
    assert store.commits == 0


async def test_birthday_limit_follows_the_utc_date_of_the_clock(store: InMemoryUserStore) -> None:
    # 13:30 on March 11 at UTC+14 is still March 10 in UTC: March 11 is valid, March 12 not.
    kiribati = timezone(timedelta(hours=14))
    service = UserService(
        lambda: FakeUnitOfWork(store),
        bcrypt_cost=4,
        clock=lambda: datetime(2024, 3, 11, 13, 30, tzinfo=kiribati),
    )
    user = store.insert(NewUser(phone="13800000003"))
    await _edit(service, user.id, birthday="2024-03-11")
    with pytest.raises(AppError) as caught:
        await _edit(service, user.id, birthday="2024-03-12")
    assert caught.value.reason == Reason.INVALID_BIRTHDAY


@pytest.mark.parametrize(
    ("nickname", "about_me", "reason"),
    [
        ("n" * 65, "", Reason.INVALID_NICKNAME),
        ("bad\x00name", "", Reason.INVALID_NICKNAME),
        ("line\nbreak", "", Reason.INVALID_NICKNAME),
        ("", "a" * 1025, Reason.INVALID_ABOUT_ME),
        ("", "bell\x07", Reason.INVALID_ABOUT_ME),
        ("<b>Ann</b>", "", Reason.INVALID_NICKNAME),
        ("Ann</", "", Reason.INVALID_NICKNAME),
        ("Ann&amp;Bob", "", Reason.INVALID_NICKNAME),
        ("", "<img src=x onerror=alert(1)>", Reason.INVALID_ABOUT_ME),
        ("", "<!-- hidden -->", Reason.INVALID_ABOUT_ME),
        ("", "<?php echo 1; ?>", Reason.INVALID_ABOUT_ME),
        ("", "&#60;script&#x3e;", Reason.INVALID_ABOUT_ME),
    ],
)
async def test_edit_refuses_invalid_text(
    service: UserService, store: InMemoryUserStore, nickname: str, about_me: str, reason: Reason
) -> None:
    user = store.insert(NewUser(phone="13800000004"))
    with pytest.raises(AppError) as caught:
        await _edit(service, user.id, nickname=nickname, about=about_me)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, reason)


async def test_text_that_only_looks_like_markup_is_plain_text(
    service: UserService, store: InMemoryUserStore
) -> None:
    user = store.insert(NewUser(phone="13800000007"))
    updated = await service.update_non_sensitive_info(
        user.id, nickname="a < b & c", birthday="", about_me="I <3 Tom & Jerry; 1<2, x > y"
    )
    assert (updated.nickname, updated.about_me) == ("a < b & c", "I <3 Tom & Jerry; 1<2, x > y")


async def test_edit_accepts_limits_and_strips_nickname(
    service: UserService, store: InMemoryUserStore
) -> None:
    user = store.insert(NewUser(phone="13800000005"))
    about = "第一行\n" + "😀" * 1020
    updated = await service.update_non_sensitive_info(
        user.id, nickname="  " + "昵" * 64 + "  ", birthday="", about_me=about
    )
    assert updated.nickname == "昵" * 64
    assert updated.about_me == about
    assert updated.utime_ms == int(NOW.timestamp() * 1000)


async def test_edit_replaces_all_fields_and_empty_unsets(
    service: UserService, store: InMemoryUserStore
) -> None:
    user = store.insert(NewUser(phone="13800000006"))
    await _edit(service, user.id, nickname="Ann", birthday="1990-05-01", about="hello")
    updated = await _edit(service, user.id)
    assert updated == await service.profile(user.id)
    profile = await service.profile(user.id)
    assert (profile.nickname, profile.birthday, profile.about_me) == ("", None, "")


@pytest.mark.parametrize("user_id", [0, 404])
async def test_edit_of_unknown_user(service: UserService, user_id: int) -> None:
    with pytest.raises(AppError) as caught:
        await _edit(service, user_id, nickname="x")
    assert_refused(caught.value, ErrorKind.NOT_FOUND, Reason.NOT_FOUND)


# --- find or create -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "e164"),
    [
        ("13812345678", "+8613812345678"),
        (" 19912345678 ", "+8619912345678"),
        ("+8613812345678", "+8613812345678"),
        ("+12025550123", "+12025550123"),
    ],
)
async def test_find_or_create_by_phone(service: UserService, phone: str, e164: str) -> None:
    first, created = await service.find_or_create_by_phone(phone)
    again, created_again = await service.find_or_create_by_phone(phone)
    assert (created, created_again) == (True, False)
    assert first == again
    assert first.phone == e164


async def test_every_form_of_a_number_is_one_account(
    service: UserService, store: InMemoryUserStore
) -> None:
    first, created = await service.find_or_create_by_phone("13900000003")
    assert created
    for form in ("+8613900000003", "+86 139 0000 0003", "139-0000-0003", "0086 13900000003"):
        found, created = await service.find_or_create_by_phone(form)
        assert (found.id, created) == (first.id, False)
    assert len(store.users) == 1


@pytest.mark.parametrize(
    "phone",
    [
        "",
        "12812345678",
        "1381234567",
        "138123456789",
        "+0123456789",
        "+12345",
        "01012345678",  # a fixed line cannot receive the code
        "138-1234-567x",
        fullwidth("13812345678"),
    ],
)
async def test_find_or_create_by_phone_refuses_invalid_phone(
    service: UserService, phone: str
) -> None:
    with pytest.raises(AppError) as caught:
        await service.find_or_create_by_phone(phone)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_PHONE)


async def test_find_or_create_reads_the_winner_after_losing_the_insert_race(
    service: UserService, store: InMemoryUserStore
) -> None:
    winner: list[int] = []

    def concurrent_writer(s: InMemoryUserStore) -> None:
        s.before_add = None
        winner.append(s.insert(NewUser(phone="+8613900000000")).id)

    store.before_add = concurrent_writer
    user, created = await service.find_or_create_by_phone("13900000000")
    assert (user.id, created) == (winner[0], False)
    assert len(store.users) == 1


async def test_find_or_create_by_wechat(service: UserService) -> None:
    first, created = await service.find_or_create_by_wechat(" oABC123 ", "uXYZ")
    again, created_again = await service.find_or_create_by_wechat("oABC123", "")
    assert (created, created_again) == (True, False)
    assert first == again
    assert first.wechat == WechatInfo(open_id="oABC123", union_id="uXYZ")


@pytest.mark.parametrize(
    ("open_id", "union_id"), [("", "u1"), ("  ", ""), ("o" * 129, ""), ("o1", "u 1"), ("o\t1", "")]
)
async def test_find_or_create_by_wechat_refuses_invalid_ids(
    service: UserService, open_id: str, union_id: str
) -> None:
    with pytest.raises(AppError) as caught:
        await service.find_or_create_by_wechat(open_id, union_id)
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.INVALID_WECHAT_INFO)


# --- batch --------------------------------------------------------------------------------


async def test_get_by_ids_omits_unknown_and_dedupes(
    service: UserService, store: InMemoryUserStore
) -> None:
    a = store.insert(NewUser(phone="13800000010"))
    b = store.insert(NewUser(phone="13800000011"))
    found = await service.get_by_ids([b.id, 999, a.id, b.id, 0, -5])
    assert found == {a.id: a, b.id: b}
    assert await service.get_by_ids([]) == {}


async def test_get_by_ids_allows_100_distinct_ids_and_refuses_101(service: UserService) -> None:
    assert await service.get_by_ids([*range(1, 101), *range(1, 101)]) == {}
    with pytest.raises(AppError) as caught:
        await service.get_by_ids(range(1, 102))
    assert_refused(caught.value, ErrorKind.INVALID_ARGUMENT, Reason.TOO_MANY_IDS)
