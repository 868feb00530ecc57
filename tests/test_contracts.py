"""Wire contracts declared once, in the protos: topics, error reasons (``docs/events.md``,
"Error reasons") and who may call what (``docs/security.md``).

- Kafka topic names, the services' error reasons and their ErrorInfo domains live in the
  protos (``webook.events.v1.Topic``, each service's ``ErrorReason``): no Python source of
  ``services/``, ``gateway/``, ``kit/`` or ``devstack/`` writes one as a string literal;
- any other reason or domain (the gateway's own) is a literal in at most one source file;
- each service's ``Reason`` enum names exactly the reasons of one proto ``ErrorReason``;
- the names on the wire did not change (a compatibility contract: pinned below);
- the producers publish the payload their topic declares;
- every rpc declares its callers (``(webook.contracts.v1.callers)``), all of them workloads;
  a method that acts for an end user lists only the workloads that may assert one; the
  table of docs/security.md is the one ``python -m kit.governance.authz`` prints.

Tests are not scanned: they may spell wire values out to pin them.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from types import ModuleType

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from kit.errors import ProtoEnum, declared_reasons, error_domain
from kit.events import EventProducer, declared_topics
from kit.governance.authz import USER_ASSERTERS, full_method, markdown_table, method_policy
from kit.security.identity import check_name

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("services", "gateway", "kit", "devstack")
TOPIC_SHAPE = re.compile(r"webook\.[a-z][a-z_]*\.[a-z][a-z_]*")
DOMAIN_SHAPE = re.compile(r"[a-z][a-z_]*\.webook")
UPPER_SNAKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")

# The wire names as they were when they were moved into the protos. Adding a reason or a
# topic needs no change here; renaming or removing one breaks every deployed peer.
WIRE_TOPICS = {
    "TOPIC_ARTICLE_READ": "webook.article.read",
    "TOPIC_ARTICLE_PUBLISHED": "webook.article.published",
    "TOPIC_ARTICLE_WITHDRAWN": "webook.article.withdrawn",
    "TOPIC_USER_CHANGED": "webook.user.changed",
    "TOPIC_USER_FOLLOWED": "webook.user.followed",
    "TOPIC_ARTICLE_LIKED": "webook.article.liked",
    "TOPIC_ARTICLE_READS": "webook.article.reads",
}
# Declared topics no producer writes any more; consumers still read what older producers
# left there during an upgrade.
CONSUMED_ONLY = {"webook.article.read"}
WIRE_REASONS = {
    "article.webook": "ARTICLE_INVALID_TITLE ARTICLE_INVALID_CONTENT ARTICLE_INVALID_AUTHOR "
    "ARTICLE_INVALID_PAGE ARTICLE_INVALID_TIME_WINDOW ARTICLE_NOT_FOUND ARTICLE_NOT_AUTHOR",
    "comment.webook": "COMMENT_INVALID_CONTENT COMMENT_INVALID_BIZ COMMENT_INVALID_PAGE "
    "COMMENT_INVALID_USER COMMENT_TOO_MANY_IDS COMMENT_PARENT_MISMATCH COMMENT_NOT_FOUND "
    "COMMENT_PARENT_NOT_FOUND COMMENT_NOT_AUTHOR COMMENT_CONCURRENT_CONFLICT",
    "follow.webook": "FOLLOW_INVALID_USER FOLLOW_SELF FOLLOW_INVALID_PAGE "
    "FOLLOW_CONCURRENT_CONFLICT",
    "interactive.webook": "INTERACTIVE_INVALID_BIZ INTERACTIVE_INVALID_BIZ_ID "
    "INTERACTIVE_INVALID_USER INTERACTIVE_INVALID_COLLECTION INTERACTIVE_TOO_MANY_IDS "
    "INTERACTIVE_CONCURRENT_CONFLICT",
    "search.webook": "SEARCH_INVALID_QUERY SEARCH_INVALID_PAGE SEARCH_INVALID_DOCUMENT "
    "SEARCH_INDEX_UNAVAILABLE SEARCH_SOURCE_UNAVAILABLE",
    "code.webook": "CODE_INVALID_PHONE CODE_INVALID_BIZ CODE_SEND_TOO_FREQUENT "
    "CODE_VERIFY_TOO_MANY CODE_SEND_FAILED CODE_STORE_UNAVAILABLE",
    "sms.webook": "SMS_INVALID_TEMPLATE SMS_INVALID_ARGS SMS_INVALID_PHONE SMS_TOO_MANY_NUMBERS "
    "SMS_INVALID_IDEMPOTENCY_KEY SMS_INVALID_QUERY SMS_UNAUTHENTICATED "
    "SMS_TEMPLATE_NOT_ALLOWED SMS_RECORDS_NOT_ALLOWED SMS_REJECTED SMS_UNAVAILABLE",
    "user.webook": "USER_INVALID_EMAIL USER_WEAK_PASSWORD USER_PASSWORD_TOO_LONG "
    "USER_INVALID_NICKNAME USER_INVALID_BIRTHDAY USER_INVALID_ABOUT_ME USER_INVALID_PHONE "
    "USER_INVALID_WECHAT_INFO USER_TOO_MANY_IDS USER_INVALID_PAGE USER_NOT_FOUND "
    "USER_EMAIL_TAKEN USER_INVALID_CREDENTIALS USER_CONCURRENT_CONFLICT",
}


def _generated_modules() -> Iterator[ModuleType]:
    for path in sorted((ROOT / "gen" / "webook").glob("*/v1/*_pb2.py")):
        relative = path.relative_to(ROOT / "gen").with_suffix("")
        yield importlib.import_module(".".join(relative.parts))


def _reason_enums() -> dict[str, ProtoEnum]:
    """Every proto ``ErrorReason`` enum, by its full name."""
    return {
        module.ErrorReason.DESCRIPTOR.full_name: module.ErrorReason
        for module in _generated_modules()
        if hasattr(module, "ErrorReason")
    }


def _topic_names() -> set[str]:
    from webook.events.v1 import events_pb2

    return {topic.name for topic in declared_topics(events_pb2.Topic)}


def _sources() -> Iterator[Path]:
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "tests" not in path.parts and "__pycache__" not in path.parts:
                yield path


def _string_literals(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def _literal_files() -> dict[str, set[str]]:
    """String literal → the scanned files that write it."""
    files: dict[str, set[str]] = defaultdict(set)
    for path in _sources():
        for value in _string_literals(path):
            files[value].add(str(path.relative_to(ROOT)))
    return files


def test_topics_reasons_and_domains_of_the_protos_are_written_nowhere_else() -> None:
    enums = _reason_enums()
    proto_declared = _topic_names() | {error_domain(enum) for enum in enums.values()}
    for enum in enums.values():
        proto_declared |= declared_reasons(enum)
    offences = sorted(
        f"{file}: {value!r} (declared in protos/)"
        for value, files in _literal_files().items()
        if value in proto_declared or TOPIC_SHAPE.fullmatch(value)
        for file in files
    )
    assert not offences, offences


def test_other_reasons_and_domains_are_literal_in_one_file_at_most() -> None:
    from gateway.errors import GatewayReason

    known: set[str] = set(GatewayReason)
    for enum in _reason_enums().values():
        known |= declared_reasons(enum)
    prefixes = {reason.split("_", 1)[0] for reason in known}
    literal_files = _literal_files()
    # Guard against a vacuous pass: the gateway's own reasons are literals of one file.
    assert "gateway/errors.py" in literal_files[GatewayReason.WECHAT_STATE_INVALID]
    offences = sorted(
        f"{value!r} in {sorted(files)}"
        for value, files in literal_files.items()
        if len(files) > 1
        and (
            DOMAIN_SHAPE.fullmatch(value)
            or (UPPER_SNAKE.fullmatch(value) and value.split("_", 1)[0] in prefixes)
        )
    )
    assert not offences, offences


def _error_modules() -> Iterator[ModuleType]:
    """Every service's ``errors`` module, and those of kit packages that serve an API."""
    for root in ("services", "kit"):
        for path in sorted((ROOT / root).glob("*/errors.py")):
            yield importlib.import_module(f"{root}.{path.parent.name}.errors")


def _service_reason_enums() -> Iterator[tuple[str, type[StrEnum]]]:
    for module in _error_modules():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, StrEnum)
                and value.__module__ == module.__name__
            ):
                yield module.__name__, value


def test_each_service_reason_enum_names_one_proto_enum_exactly() -> None:
    by_reasons = {frozenset(declared_reasons(enum)): name for name, enum in _reason_enums().items()}
    covered = set()
    offences = []
    for module, reason_enum in _service_reason_enums():
        proto = by_reasons.get(frozenset(reason_enum))
        if proto is None:
            offences.append(f"{module}.{reason_enum.__name__} matches no proto ErrorReason")
        covered.add(proto)
    assert not offences, offences
    assert covered == set(by_reasons.values())


def test_service_domains_come_from_their_protos() -> None:
    used = set()
    for module in _error_modules():
        used |= {
            value
            for name, value in vars(module).items()
            if name.endswith("DOMAIN") and isinstance(value, str)
        }
    assert used == {error_domain(enum) for enum in _reason_enums().values()}


def test_the_wire_names_did_not_change() -> None:
    from webook.events.v1 import events_pb2

    topics = events_pb2.Topic
    declared = {
        value.name: topic.name
        for value, topic in zip(
            sorted(topics.DESCRIPTOR.values, key=lambda v: v.number)[1:],
            declared_topics(topics),
            strict=True,
        )
    }
    assert {name: declared.get(name) for name in WIRE_TOPICS} == WIRE_TOPICS
    reasons = {error_domain(enum): declared_reasons(enum) for enum in _reason_enums().values()}
    missing = {
        domain: sorted(set(pinned.split()) - reasons.get(domain, frozenset()))
        for domain, pinned in WIRE_REASONS.items()
    }
    assert all(not gone for gone in missing.values()), missing


class _RecordingProducer:
    def __init__(self) -> None:
        self.published: list[tuple[str, Message]] = []

    def publish(self, topic: str, key: int, event: Message) -> bool:
        self.published.append((topic, event))
        return True


def _as_producer(recorder: _RecordingProducer) -> EventProducer:
    producer: EventProducer = recorder  # type: ignore[assignment]
    return producer


def test_producers_publish_the_payload_their_topic_declares() -> None:
    from services.article.domain import PublishedArticle
    from services.article.events import KafkaArticleEvents, ReadBatcher
    from services.follow.events import FollowEventWriter
    from services.interactive.domain import ArticleOwner
    from services.interactive.events import KafkaLikeEvents
    from services.user.domain import User
    from services.user.events import KafkaUserEvents
    from webook.events.v1 import events_pb2

    recorder = _RecordingProducer()
    articles = KafkaArticleEvents(_as_producer(recorder))
    articles.article_published(
        PublishedArticle(
            id=7, author_id=3, title="t", content="c", abstract="a", ctime_ms=1, utime_ms=2
        ),
        at_ms=2,
    )
    articles.article_withdrawn(7, 3, at_ms=3)
    KafkaUserEvents(_as_producer(recorder)).user_changed(User(id=3, nickname="n"), at_ms=4)
    FollowEventWriter(_as_producer(recorder)).user_followed(5, 3, at_ms=5)
    KafkaLikeEvents(_as_producer(recorder)).article_liked(
        ArticleOwner(article_id=7, author_id=3, title="t"), 5, at_ms=6
    )
    ReadBatcher(_as_producer(recorder), window_s=0).article_read(7, 0, at_ms=7)

    payloads: Mapping[str, str] = {
        topic.name: topic.payload.full_name for topic in declared_topics(events_pb2.Topic)
    }
    assert [topic for topic, _ in recorder.published] == [
        topic for topic in payloads if topic not in CONSUMED_ONLY
    ]
    for topic, event in recorder.published:
        assert event.DESCRIPTOR.full_name == payloads[topic], topic


def test_the_shapes_see_what_they_look_for() -> None:
    assert TOPIC_SHAPE.fullmatch("webook.article.read")
    assert not TOPIC_SHAPE.fullmatch("webook.user.v1")  # a proto package, not a topic
    assert not TOPIC_SHAPE.fullmatch("webook.user.v1.UserService")
    assert DOMAIN_SHAPE.fullmatch("gateway.webook")
    assert UPPER_SNAKE.fullmatch("USER_NOT_FOUND")
    assert not UPPER_SNAKE.fullmatch("USER")


# Who may call what (docs/security.md): every rpc declares its callers in its proto.


def _service_methods() -> Iterator[MethodDescriptor]:
    for module in _generated_modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


def _workloads() -> set[str]:
    """The workloads a certificate may name: the services of the stack, the gateway and the
    operator (webookctl)."""
    from devstack.tls import certificate_identities

    return {*certificate_identities(), *USER_ASSERTERS}


def test_every_rpc_declares_its_callers() -> None:
    methods = list(_service_methods())
    assert len(methods) > 30  # guard against a vacuous pass: every service's methods
    undeclared = sorted(full_method(m) for m in methods if not method_policy(m).callers)
    assert not undeclared, f"rpcs without option (webook.contracts.v1.callers): {undeclared}"


def test_only_user_asserters_call_methods_that_act_for_a_user() -> None:
    acting = [m for m in _service_methods() if method_policy(m).acts_for_user]
    assert acting  # guard against a vacuous pass
    offences = sorted(
        f"{full_method(m)} acts for a user but lists {sorted(extra)}"
        for m in acting
        if (extra := method_policy(m).callers - USER_ASSERTERS)
    )
    assert not offences, offences


def test_callers_are_workload_names() -> None:
    workloads = _workloads()
    assert all(check_name(name) for name in workloads)
    offences = sorted(
        f"{full_method(m)}: {name!r}"
        for m in _service_methods()
        for name in method_policy(m).callers
        if name not in workloads
    )
    assert not offences, f"not a workload ({sorted(workloads)}): {offences}"


def _doc_section(text: str, heading: str) -> str:
    _, found, rest = text.partition(f"\n## {heading}\n")
    assert found, f"docs/security.md has no section '## {heading}'"
    return rest.split("\n## ", 1)[0]


def test_the_security_doc_table_is_what_the_protos_declare() -> None:
    doc = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    documented = [
        line for line in _doc_section(doc, "Who may call what").splitlines() if line.startswith("|")
    ]
    assert documented == markdown_table().splitlines(), (
        "docs/security.md 'Who may call what' differs from the protos: regenerate the table "
        "with `python -m kit.governance.authz` and paste it in place of the old one"
    )
