"""The one list of services the local stack knows: adding a service is one entry here.

Every launcher of the repository — ``make run`` (:mod:`devstack.__main__`), the end-to-end
and deployment tests, the chaos stack and the benchmarks — reads :data:`CATALOG` through
:mod:`devstack.suite`; nothing else lists services. An entry says how to run a service
locally: its name (the package ``services.<name>`` and the settings prefix
``WEBOOK_<NAME>_``), its port slot, which services it calls, whether it has Alembic
migrations, settings of its own under the local stack and how many instances ``make run``
starts by default, and the database its tables are being moved to, if any.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

# The setting (after a service's prefix) naming the database its tables are being moved to.
MIGRATION_DESTINATION: Final = "MIGRATION_DESTINATION_URL"
# Instance r of the service in slot s listens on base + PORT_STRIDE·s + r.
PORT_STRIDE: Final = 10
MAX_REPLICAS: Final = PORT_STRIDE - 1


@dataclass(frozen=True)
class LocalContext:
    """What a service's own local settings may depend on (see :attr:`ServiceSpec.settings`)."""

    # The file the sms service's local provider appends messages to ("" when unset).
    sms_log_file: str = ""
    # Whether the stack's broker keeps its data across its own restarts (object storage,
    # devstack.infra.BrokerStorage) rather than losing it (memory storage).
    persistent_broker: bool = False
    # The local WeChat Pay (devstack.wechatpay_emulator): the directory of its keys (made
    # there on first use), its base URL, and where it posts payment notifications (the
    # gateway's /pay/callback). An empty keys directory: the payment service gets no
    # WeChat Pay settings (and refuses to start).
    wechatpay_keys_dir: str = ""
    wechatpay_base: str = ""
    pay_notify_url: str = ""


def _no_settings(_: LocalContext) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class ServiceSpec:
    """How the local stack runs one service."""

    name: str
    # Fixed position in the port plan, so a service keeps its ports when another is added.
    port_slot: int
    # Services it calls (through etcd discovery); ``--only`` starts them too.
    peers: tuple[str, ...] = ()
    # An Alembic history in ``services/<name>/migrations`` applied before it starts.
    migrations: bool = True
    # Settings of its own under the local stack, without the prefix (``"PROVIDERS"``).
    settings: Callable[[LocalContext], Mapping[str, str]] = field(default=_no_settings)
    # Instances ``make run`` starts unless ``--replicas`` says otherwise.
    replicas: int = 1
    # The database its tables are being moved to with kit.migrator, by name (a SQLite file
    # ``<name>.db`` beside the others, or ``<database>_<name>`` on MySQL): the stack sets
    # :data:`MIGRATION_DESTINATION` and migrates it with the service. "": no migration.
    migration_destination: str = ""
    # The Redis keys (and pub/sub channels) its repository uses: its Redis ACL user may
    # touch these only (devstack.credentials). A new key prefix needs a pattern here.
    redis_keys: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """The module ``python -m`` runs."""
        return f"services.{self.name}"

    @property
    def env_prefix(self) -> str:
        """The prefix of its settings in the environment."""
        return f"WEBOOK_{self.name.upper()}_"

    def grpc_port(self, base: int, replica: int) -> int:
        """The gRPC port of instance ``replica`` for a port plan starting at ``base``."""
        if not 0 <= replica <= MAX_REPLICAS:
            raise ValueError(f"replica index must be 0..{MAX_REPLICAS}, got {replica}")
        return base + PORT_STRIDE * self.port_slot + replica

    def available(self) -> bool:
        """Whether this checkout has the service (``services/<name>/__main__.py``)."""
        if importlib.util.find_spec(self.module) is None:
            return False
        return importlib.util.find_spec(f"{self.module}.__main__") is not None


def _sms_settings(context: LocalContext) -> Mapping[str, str]:
    # No SMS leaves the machine: the local provider appends every message to a file.
    if not context.sms_log_file:
        return {}
    provider = {"name": "local", "kind": "local", "log_file": context.sms_log_file}
    return {"PROVIDERS": json.dumps([provider])}


def _consumer_settings(_: LocalContext) -> Mapping[str, str]:
    # The local broker forms a consumer group in about half the session timeout, and a
    # consumer that stops while its group forms waits for it: a short timeout keeps both
    # the first join and Ctrl-C quick.
    return {"KAFKA_SESSION_TIMEOUT_MS": "3000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500"}


def _producer_settings(context: LocalContext) -> Mapping[str, str]:
    # The local broker (tansu, whatever its storage) refuses to grant producer ids, so an
    # idempotent producer never gets to send. With memory storage it also loses every
    # event on restart, which the replay window repairs: the buffered producer sends its
    # window again, the outbox relay makes its window's rows pending again (the chaos
    # suite's broker fault relies on both); a broker on object storage keeps what it
    # acknowledged, and sending it again would only duplicate it. Production runs
    # idempotent, no replay (docs/events.md).
    replay_window_s = "0" if context.persistent_broker else "60"
    return {"KAFKA_IDEMPOTENT_PRODUCER": "false", "KAFKA_REPLAY_WINDOW_SECONDS": replay_window_s}


# The scheduler's declared jobs under the local stack (WEBOOK_SCHEDULER_JOBS, added at its
# start when absent): the ranking job, calling the ranking service through discovery. Every
# five minutes, as in production; `webookctl jobs run-now ranking.refresh` runs it at once.
RANKING_JOB: Final[Mapping[str, object]] = {
    "name": "ranking.refresh",
    "cron": "*/5 * * * *",
    "executor_kind": "grpc",
    "executor_config": {
        "service": "ranking",
        "method": "webook.ranking.v1.RankingService/RunRanking",
        "timeout_s": 120,
    },
}


# Payment: orders still INIT half an hour after creation are looked up at WeChat Pay and
# completed or closed (docs/payment.md, "Reconciliation").
PAYMENT_RECONCILIATION_JOB: Final[Mapping[str, object]] = {
    "name": "payment.reconcile",
    "cron": "*/5 * * * *",
    "executor_kind": "grpc",
    "executor_config": {
        "service": "payment",
        "method": "webook.payment.v1.PaymentService/RunReconciliation",
        "timeout_s": 120,
    },
}

# Account: yesterday's credits against the payments that succeeded (docs/account.md); the
# empty request means "the last full UTC day". Early in the day, after the night's events.
ACCOUNT_RECONCILIATION_JOB: Final[Mapping[str, object]] = {
    "name": "account.reconcile",
    "cron": "30 1 * * *",
    "executor_kind": "grpc",
    "executor_config": {
        "service": "account",
        "method": "webook.account.v1.AccountService/RunReconciliation",
        "timeout_s": 300,
    },
}

DECLARED_JOBS: Final[tuple[Mapping[str, object], ...]] = (
    RANKING_JOB,
    PAYMENT_RECONCILIATION_JOB,
    ACCOUNT_RECONCILIATION_JOB,
)


def _scheduler_settings(_: LocalContext) -> Mapping[str, str]:
    return {"JOBS": json.dumps(list(DECLARED_JOBS))}


def _payment_settings(context: LocalContext) -> Mapping[str, str]:
    # The emulator's keys and addresses (imported here: the catalog is read by processes
    # that never pay, and the emulator module pulls in uvicorn and cryptography).
    if not context.wechatpay_keys_dir:
        return {}
    from devstack.wechatpay_emulator import ensure_keys

    keys = ensure_keys(Path(context.wechatpay_keys_dir))
    return keys.service_env("", context.wechatpay_base, context.pay_notify_url)


def _producer_consumer_settings(context: LocalContext) -> Mapping[str, str]:
    # Publishes and consumes (reward: RewardPaid out, payment status changes in; tag:
    # TagsChanged both ways, for every replica's cache; interactive: ArticleLiked out,
    # reads in).
    return {**_producer_settings(context), **_consumer_settings(context)}


# Start order only matters for the status table; processes start in parallel.
CATALOG: Final[tuple[ServiceSpec, ...]] = (
    ServiceSpec(
        "user",
        port_slot=0,
        settings=_producer_settings,
        redis_keys=("webook:user:*", "user:login:*"),
    ),
    ServiceSpec("sms", port_slot=1, settings=_sms_settings, redis_keys=("sms:*",)),
    ServiceSpec(
        "article",
        port_slot=2,
        peers=("user", "follow", "interactive"),
        settings=_producer_settings,
        redis_keys=("webook:article:*",),
    ),
    ServiceSpec(
        "interactive",
        port_slot=3,
        peers=("article",),
        # Consumes reads; publishes ArticleLiked with its buffered producer.
        settings=_producer_consumer_settings,
        redis_keys=("webook:interactive:*", "webook:interactive-flags:*"),
        # Its tables' move in source_only mode (the service's default): nothing changes
        # until an operator switches the mode (docs/interactive.md, "Migrating the tables").
        migration_destination="interactive_destination",
    ),
    ServiceSpec("comment", port_slot=4, peers=("article",), redis_keys=("webook:comment:*",)),
    # Publishes UserFollowed through its outbox (the feed's "new follower").
    ServiceSpec(
        "follow",
        port_slot=5,
        settings=_producer_settings,
        redis_keys=("webook:follow:*",),
    ),
    ServiceSpec(
        "search",
        port_slot=6,
        peers=("article", "user", "tag"),
        migrations=False,
        settings=_consumer_settings,
        redis_keys=("webook:search:*",),
    ),
    # Cron jobs over SQL with leases and fencing tokens (docs/scheduler.md); no Redis. It
    # declares the ranking and reconciliation jobs (DECLARED_JOBS) and calls their services.
    ServiceSpec(
        "scheduler",
        port_slot=7,
        peers=("ranking", "payment", "account"),
        settings=_scheduler_settings,
    ),
    # Hot articles: a job (run by the scheduler) over article and interactive, served from
    # memory with a copy in Redis (docs/ranking.md); no database.
    ServiceSpec(
        "ranking",
        port_slot=8,
        peers=("article", "interactive"),
        migrations=False,
        redis_keys=("webook:ranking:*",),
    ),
    # Orders at WeChat Pay (the local emulator under the stack), their notifications and
    # reconciliation; status changes published through its outbox (docs/payment.md). No Redis.
    ServiceSpec("payment", port_slot=9, settings=_payment_settings),
    # Rewards of articles: checks the article with article, pays through payment, follows
    # payment's status events, publishes RewardPaid (docs/reward.md). No Redis.
    ServiceSpec(
        "reward", port_slot=10, peers=("article", "payment"), settings=_producer_consumer_settings
    ),
    # Balances and their ledger, credited from RewardPaid; reconciled against payment
    # (docs/account.md). No Redis.
    ServiceSpec("account", port_slot=11, peers=("payment",), settings=_consumer_settings),
    # Readers' feeds: article events fanned out into followers' inboxes, or merged at read
    # time for big authors; followers from follow (docs/feed.md). No Redis.
    ServiceSpec("feed", port_slot=12, peers=("follow",), settings=_consumer_settings),
    # Users' tags on their articles, preloaded into each replica's memory and kept current
    # by its own TagsChanged events (docs/tag.md); authorship checked with article. No Redis.
    ServiceSpec("tag", port_slot=13, peers=("article",), settings=_producer_consumer_settings),
)

SERVICE_NAMES: Final[tuple[str, ...]] = tuple(spec.name for spec in CATALOG)


def spec(name: str) -> ServiceSpec:
    """The entry of service ``name``; ``KeyError`` naming the known ones otherwise."""
    for entry in CATALOG:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICE_NAMES)}")


def with_peers(names: Iterable[str]) -> list[str]:
    """``names`` and every service they call, directly or not, in catalog order."""
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(spec(name).peers)
    return [name for name in SERVICE_NAMES if name in wanted]


def local_settings(name: str, context: LocalContext) -> dict[str, str]:
    """The catalog's own settings of ``name``, with its prefix."""
    entry = spec(name)
    return {f"{entry.env_prefix}{key}": value for key, value in entry.settings(context).items()}


# Services whose instances each keep a directory only one process may hold (search's
# index: tantivy lets one process write it): the setting naming it, and the directory's
# name. Replica 0 keeps the service's own default, so that commands run with replica 0's
# environment (a reindex) find its directory; replica ``r`` > 0 gets ``<name>-<r>`` beside
# the stack's SQLite databases (under ``.run`` on another database).
REPLICA_DIRS: Final[Mapping[str, tuple[str, str]]] = {"search": ("DATA_DIR", "search-index")}
