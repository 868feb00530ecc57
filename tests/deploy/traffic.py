"""Traffic through the gateway that exercises every dashboard panel's metrics.

Signup and login (password and SMS code, wrong passwords and codes included), profile,
publish, read (read events through Kafka), like, collect, comment, follow, search (once the
published articles reached the index through Kafka; a refused query too), a missing article
(NOT_FOUND), an article tagged and its tags read back (the tag cache's misses and hits), the
followers' feeds, the hot ranking, a reward paid through the WeChat Pay emulator (its
notification through the gateway's callback, the author's account credited) and a forged
notification refused, the payment and account reconciliations run as the scheduler runs
them, a scheduler job run on demand and a ranking job run, the
interactive tables' migration validated as an operator would (a full validation each round,
and an incremental one left running, so that the validators' checkpoint age and lag exist),
a burst past a rate limit (429), an oversized body (413), health probes of every gRPC
instance, and finally a follow instance killed without deregistering, so that the
gateway's balancer fails over from it and ejects it.

Live settings, as the configuration operator changes them (``config-operator``, the
stack's credentials): a valid change of every process's service (the configuration
dashboard's versions step up), and an invalid value written straight to etcd for the comment
service, which its process refuses (apply failures, ``webook_config_valid`` 0) until a valid
change replaces it.

Rates need a counter to change between two scrapes, and a labelled series exists only from
its first increment: the traffic runs in two rounds with a scrape between them, and the reads
after the kill are spread over the balancer's ejection period (an ejection, a failed trial
call, a second ejection).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass

import httpx

from bench.config_propagation import Process, wait_until_applied
from devstack.suite import grpc_serving
from devstack.tls import OPERATOR
from kit.grpcx.fencing import fencing_metadata
from kit.liveconfig import DELETE, ConfigStore
from services.search.query import MAX_QUERY_TERMS
from tests.deploy.stack import BURST, MAX_BODY_BYTES, ObservedStack
from webook.account.v1 import account_pb2, account_pb2_grpc
from webook.migrator.v1 import migrator_pb2, migrator_pb2_grpc
from webook.payment.v1 import payment_pb2, payment_pb2_grpc
from webook.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from webook.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

PASSWORD = "hello#world123"
USER_AGENT = "webook-observability-e2e/1.0"


def _signup_login(client: httpx.Client) -> tuple[int, dict[str, str]]:
    email = f"ops-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}
    assert client.post("/users/signup", json=body).json()["code"] == 0
    # A second signup with the same email: ALREADY_EXISTS from the user service.
    assert client.post("/users/signup", json=body).json()["code"] != 0
    assert (
        client.post("/users/login", json={"email": email, "password": "wrong#pass1"}).json()["code"]
        != 0
    )
    login = client.post("/users/login", json={"email": email, "password": PASSWORD})
    token = login.headers["x-jwt-token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["uid"]), {"Authorization": f"Bearer {token}"}


def _codes(stack: ObservedStack, phone: str) -> list[str]:
    if not stack.sms_log.exists():
        return []
    lines = stack.sms_log.read_text(encoding="utf-8").splitlines()
    # The sms service may record the number as sent or in E.164 form (+86 for Chinese ones).
    spellings = ([phone], [f"+86{phone}"])
    return [m["args"][0] for m in map(json.loads, lines) if m["numbers"] in spellings]


def _sms_login(client: httpx.Client, stack: ObservedStack) -> None:
    phone = "139" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    sent = client.post("/users/login_sms/code/send", json={"phone": phone}).json()
    assert sent["code"] == 0, sent
    deadline = time.monotonic() + 10
    while not _codes(stack, phone):
        assert time.monotonic() < deadline, "no code in the SMS log"
        time.sleep(0.05)
    code = _codes(stack, phone)[-1]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert client.post("/users/login_sms", json={"phone": phone, "code": wrong}).json()["code"]
    login = client.post("/users/login_sms", json={"phone": phone, "code": code}).json()
    assert login["code"] == 0, login


def _search(client: httpx.Client, title: str) -> None:
    """Search every type until ``title`` (just published) is found, and one refused query."""
    deadline = time.monotonic() + 20
    while True:
        found = client.get("/search/query", params={"q": title, "type": "article"}).json()
        assert found["code"] == 0, found
        if any(hit["title"] == title for hit in found["data"]["hits"]):
            break
        assert time.monotonic() < deadline, f"{title!r} never reached the search index"
        time.sleep(0.2)
    for kind in ("all", "user"):
        assert client.get("/search/query", params={"q": "Ops", "type": kind}).json()["code"] == 0
    # More terms than a query may have: the search service refuses it (INVALID_ARGUMENT).
    too_many_terms = " ".join(["ops"] * (MAX_QUERY_TERMS + 1))
    refused = client.get("/search/query", params={"q": too_many_terms}).json()
    assert refused["code"] == 4, refused


def _probe_health(stack: ObservedStack) -> None:
    # Health checks of every instance, as a monitor would make them (over mutual TLS, with
    # a certificate): some services (search) serve no gateway route yet.
    for name, addresses in stack.grpc_addresses.items():
        for address in addresses:
            grpc_serving(address, stack.infra.client_tls(name))


# Reads of follow counts right after the kill, back to back: each failure halves the dead
# endpoint's effective weight (down to a tenth), so it takes some 30 calls before it has
# failed the 5 consecutive calls that eject it, and they must happen before its lease (10 s)
# expires and discovery drops it anyway.
FOLLOW_BURST_AFTER_KILL = 100
# Then paced reads: longer in total than the balancer's first ejection period (5 s), so that
# the trial call fails and ejects again.
FOLLOW_READS_AFTER_KILL = 40
FOLLOW_READ_PAUSE_S = 0.2


def drive(stack: ObservedStack) -> None:
    """Send the traffic of the module docstring; asserts the answers it relies on."""
    with httpx.Client(
        base_url=stack.base_url, headers={"User-Agent": USER_AGENT}, timeout=10
    ) as client:
        asyncio.run(_change_settings(stack))
        for _ in range(2):
            author = _one_round(client, stack)
            stack.wait_for_a_scrape()
        _kill_a_follow_instance(client, stack, author)


# The service whose process is given an invalid value (trace_sample_ratio is at most 1).
REFUSING = "comment"
INVALID = {"trace_sample_ratio": 5.0}
SETTLE_S = 30.0


async def _change_settings(stack: ObservedStack) -> None:
    """The configuration changes of the module docstring, each waited for in every process."""
    credentials = stack.infra.credentials
    assert credentials is not None
    operator = credentials.config_operator
    processes = [
        Process(t.job, t.metrics_url) for t in stack.live_targets() if t.job != "lag-exporter"
    ]
    services = sorted({p.service for p in processes})
    environment = stack.infra.mode
    async with (
        httpx.AsyncClient(timeout=5) as http,
        ConfigStore.connect(
            stack.infra.etcd_endpoints, username=operator.username, password=operator.password
        ) as store,
    ):
        changes = [
            await store.set(environment, s, {"log_level": "INFO"}, who="ops", why="traffic")
            for s in services
        ]
        revisions = {c.service: c.revision for c in changes}
        await wait_until_applied(
            http, revisions, processes, time.perf_counter(), deadline_s=SETTLE_S
        )
        # No validation: as if written around webookctl, straight to etcd.
        await store.set(environment, REFUSING, INVALID, who="ops", why="invalid on purpose")
        refusing = [p for p in processes if p.service == REFUSING]
        await _until_refused(http, refusing)
        fixed = await store.set(
            environment, REFUSING, dict.fromkeys(INVALID, DELETE), who="ops", why="repair"
        )
        await wait_until_applied(
            http, {REFUSING: fixed.revision}, refusing, time.perf_counter(), deadline_s=SETTLE_S
        )


async def _until_refused(http: httpx.AsyncClient, processes: list[Process]) -> None:
    """Wait until every one of ``processes`` counted a refused apply."""
    deadline = time.monotonic() + SETTLE_S
    pending = list(processes)
    while pending:
        for process in list(pending):
            text = (await http.get(process.metrics_url)).text
            prefix = f'webook_config_apply_failures_total{{service="{process.service}"}} '
            counts = [float(r.split()[-1]) for r in text.splitlines() if r.startswith(prefix)]
            if counts and counts[0] >= 1:
                pending.remove(process)
        assert time.monotonic() < deadline, f"never refused the invalid value: {pending}"
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Author:
    """A signed-in author and the articles published in a round."""

    uid: int
    headers: dict[str, str]
    article_ids: list[int]


def _one_round(client: httpx.Client, stack: ObservedStack) -> Author:
    """Every flow once."""
    author_id, author = _signup_login(client)
    readers = [_signup_login(client) for _ in range(3)]
    assert client.get("/users/profile", headers=author).status_code == 200
    edit = {"nickname": "Ops", "birthday": "1990-01-01", "aboutMe": "dashboards"}
    assert client.post("/users/edit", json=edit, headers=author).json()["code"] == 0
    for _ in range(3):
        _sms_login(client, stack)

    article_ids: list[int] = []
    for index in range(3):
        draft = {"title": f"observability {index}", "content": "<p>metrics</p>"}
        published = client.post("/articles/publish", json=draft, headers=author).json()
        assert published["code"] == 0, published
        article_ids.append(int(published["data"]))
    for _uid, reader in readers:
        for aid in article_ids:
            for _ in range(2):
                read = client.get(f"/articles/pub/{aid}", headers=reader).json()
                assert read["code"] == 0, read
        aid = article_ids[0]
        like = {"id": aid, "like": True}
        assert client.post("/articles/pub/like", json=like, headers=reader).json()["code"] == 0
        collect = {"id": aid, "cid": 0}
        assert (
            client.post("/articles/pub/collect", json=collect, headers=reader).json()["code"] == 0
        )
        comment = {"biz": "article", "bizId": aid, "content": "nice", "parentId": 0}
        assert client.post("/comments/create", json=comment, headers=reader).json()["code"] == 0
        follow = {"followee": author_id}
        assert client.post("/follow/follow", json=follow, headers=reader).json()["code"] == 0
    _search(client, f"observability {len(article_ids) - 1}")
    _tag_and_read_feeds(client, author, article_ids[0], [reader for _uid, reader in readers])
    missing = client.get("/articles/pub/999999999", headers=readers[0][1]).json()
    assert missing["code"] != 0
    assert (
        client.post("/articles/list", json={"offset": 0, "limit": 10}, headers=author).json()[
            "code"
        ]
        == 0
    )

    statuses = [
        client.get("/comments/list", params={"bizId": article_ids[0]}).status_code
        for _ in range(BURST + 5)
    ]
    assert 429 in statuses, statuses
    too_large = client.post("/articles/edit", content=b"x" * (MAX_BODY_BYTES + 1), headers=author)
    assert too_large.status_code == 413
    ranking = client.get("/articles/ranking", params={"offset": 0, "limit": 10}).json()
    assert ranking["code"] == 0, ranking
    _probe_health(stack)
    _reward_and_pay(client, stack, author, article_ids[0], readers[0][1])
    _run_jobs(stack)
    _validate_migration(stack)
    return Author(author_id, author, article_ids)


def _tag_and_read_feeds(
    client: httpx.Client, author: dict[str, str], article_id: int, readers: list[dict[str, str]]
) -> None:
    """The author tags an article and reads its tags back, twice (the tag cache's first
    lookups miss and fill it, the next ones hit); each follower reads their feed."""
    created = client.post("/tags/create", json={"name": "observability"}, headers=author).json()
    assert created["code"] == 0, created
    attach = {"bizId": article_id, "tagIds": [created["data"]["tag"]["id"]]}
    attached = client.post("/tags/attach", json=attach, headers=author).json()
    assert attached["code"] == 0, attached
    for _ in range(2):
        mine = client.get("/tags/mine", headers=author).json()
        assert mine["code"] == 0, mine
        tags = client.get("/tags/resource", params={"bizId": article_id}, headers=author).json()
        assert tags["code"] == 0, tags
    for reader in readers:
        feed = client.get("/feed", headers=reader).json()
        assert feed["code"] == 0, feed


# A reward of 1999 fen: the author's share is 1800 (the platform keeps 10 %, rounded down).
REWARD_FEN = 1999
# The account consumer may still be joining its group when the first reward is paid.
PAY_DEADLINE_S = 180.0
MS_PER_DAY = 86_400_000


def _log_tails(stack: ObservedStack, *services: str, lines: int = 40) -> dict[str, list[str]]:
    """The last ``lines`` lines of each of ``services``' first instance's log."""
    tails = {}
    for service in services:
        path = stack.log_dir / f"{service}-0.log"
        if path.exists():
            tails[service] = path.read_text(errors="replace").splitlines()[-lines:]
    return tails


def _reward_and_pay(
    client: httpx.Client,
    stack: ObservedStack,
    author: dict[str, str],
    article_id: int,
    reader: dict[str, str],
) -> None:
    """A reader rewards the author's article and pays at the emulator; the reward becomes
    paid and the author's account holds its share. A forged notification is refused. Then
    the reconciliations, as the scheduler calls them (payment's, and account's of today)."""
    before = client.get("/account", headers=author).json()["data"]["balance"]
    body = {"id": article_id, "amt": REWARD_FEN}
    code = client.post("/articles/pub/reward", json=body, headers=reader).json()
    assert code["code"] == 0, code
    rid = int(code["data"]["rid"])
    paid = httpx.post(
        f"{stack.wechatpay_base}/emulator/pay", json={"out_trade_no": f"reward-{rid}"}, timeout=10
    )
    assert paid.status_code == 200, paid.text
    forged = client.post("/pay/callback", content=b"{}", headers={"Wechatpay-Serial": "0"})
    assert forged.status_code == 401, forged.text
    deadline = time.monotonic() + PAY_DEADLINE_S
    while True:
        detail = client.post("/reward/detail", json={"rid": rid}, headers=reader).json()
        balance = client.get("/account", headers=author).json()["data"]["balance"]
        if detail["data"] == "RewardStatusPayed" and balance == before + 1800:
            break
        assert time.monotonic() < deadline, (
            detail,
            balance,
            _log_tails(stack, "reward", "account"),
        )
        time.sleep(0.2)
    token = int(time.time())
    (payment,) = stack.grpc_addresses["payment"][:1]
    tls = stack.infra.client_tls("payment", as_identity="scheduler")
    assert tls is not None
    with tls.sync_channel(payment) as channel:
        payment_pb2_grpc.PaymentServiceStub(channel).RunReconciliation(
            payment_pb2.RunReconciliationRequest(),
            metadata=fencing_metadata(token, "payment.reconcile"),
            timeout=30,
        )
    (account,) = stack.grpc_addresses["account"][:1]
    tls = stack.infra.client_tls("account", as_identity="scheduler")
    assert tls is not None
    today = int(time.time() * 1000) // MS_PER_DAY * MS_PER_DAY
    with tls.sync_channel(account) as channel:
        account_pb2_grpc.AccountServiceStub(channel).RunReconciliation(
            account_pb2.RunReconciliationRequest(day_start_ms=today),
            metadata=fencing_metadata(token, "account.reconcile"),
            timeout=30,
        )


# The scheduler's job of the traffic: never due by itself (once a year), run on demand.
OPS_JOB = "observability-noop"
JOB_DEADLINE_S = 60.0


def _run_jobs(stack: ObservedStack) -> None:
    """A scheduler run (as the operator: add the job once, run it now, wait for its
    execution) and a ranking run (as the scheduler would call it)."""
    (scheduler,) = stack.grpc_addresses["scheduler"][:1]
    (ranking,) = stack.grpc_addresses["ranking"][:1]
    tls = stack.infra.client_tls("scheduler", as_identity=OPERATOR)
    assert tls is not None
    with tls.sync_channel(scheduler) as channel:
        jobs = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        names = {job.name for job in jobs.ListJobs(scheduler_pb2.ListJobsRequest()).jobs}
        if OPS_JOB not in names:
            jobs.AddJob(
                scheduler_pb2.AddJobRequest(
                    name=OPS_JOB,
                    cron="0 0 1 1 *",
                    executor_kind="local",
                    executor_config=json.dumps({"function": "noop"}),
                )
            )
        history = scheduler_pb2.ListExecutionsRequest(name=OPS_JOB, limit=100)
        before = sum(1 for e in jobs.ListExecutions(history).executions if e.ended_ms)
        jobs.RunNow(scheduler_pb2.RunNowRequest(name=OPS_JOB))
        deadline = time.monotonic() + JOB_DEADLINE_S
        while sum(1 for e in jobs.ListExecutions(history).executions if e.ended_ms) <= before:
            assert time.monotonic() < deadline, "the scheduler never ran the job"
            time.sleep(0.2)
    tls = stack.infra.client_tls("ranking", as_identity="scheduler")
    assert tls is not None
    with tls.sync_channel(ranking) as channel:
        ranked = ranking_pb2_grpc.RankingServiceStub(channel).RunRanking(
            ranking_pb2.RunRankingRequest(fencing_token=int(time.time())), timeout=30
        )
    assert ranked.ranked >= 0


# The interactive service's migration (source_only under the stack): its validations, as
# `webookctl migrate full start` / `incr start` run them, as the operator.
VALIDATION_DEADLINE_S = 90.0
LAG_SERIES = "webook_migrator_validator_lag_seconds{"


def _validate_migration(stack: ObservedStack) -> None:
    """A full validation of the interactive tables, waited for to its end; then, unless one
    runs already, an incremental one left running, waited for until it reports its lag."""
    address = stack.grpc_addresses["interactive"][0]
    (target,) = (t for t in stack.targets if t.process is stack.services["interactive"][0])
    tls = stack.infra.client_tls("interactive", as_identity=OPERATOR)
    assert tls is not None
    full, incremental = migrator_pb2.VALIDATION_KIND_FULL, migrator_pb2.VALIDATION_KIND_INCREMENTAL

    def latest(
        stub: migrator_pb2_grpc.MigratorServiceStub, kind: migrator_pb2.ValidationKind.ValueType
    ) -> migrator_pb2.ValidationStatus | None:
        status = stub.Status(migrator_pb2.StatusRequest(), timeout=10)
        return next((v for v in status.validations if v.kind == kind), None)

    with tls.sync_channel(address) as channel:
        stub = migrator_pb2_grpc.MigratorServiceStub(channel)
        stub.StartValidation(migrator_pb2.StartValidationRequest(kind=full), timeout=10)
        deadline = time.monotonic() + VALIDATION_DEADLINE_S
        while (run := latest(stub, full)) is None or run.running:
            assert time.monotonic() < deadline, "the full validation never ended"
            time.sleep(0.2)
        assert not run.error, run
        assert run.rows_checked > 0, run
        running = latest(stub, incremental)
        if running is None or not running.running:
            stub.StartValidation(migrator_pb2.StartValidationRequest(kind=incremental), timeout=10)
    deadline = time.monotonic() + VALIDATION_DEADLINE_S
    while not any(
        line.startswith(LAG_SERIES)
        for line in httpx.get(target.metrics_url, timeout=5).text.splitlines()
    ):
        assert time.monotonic() < deadline, "the incremental validation never reported its lag"
        time.sleep(0.2)


def _kill_a_follow_instance(client: httpx.Client, stack: ObservedStack, author: Author) -> None:
    # A follow instance dies without deregistering: its address stays in etcd for the
    # lease's TTL, and the gateway's reads of follow counts fail over from it.
    doomed = next(t for t in stack.targets if t.process is stack.services["follow"][1])
    doomed.process.kill()
    stack.killed.append(doomed)
    for _ in range(FOLLOW_BURST_AFTER_KILL):
        counts = client.get("/follow/counts", params={"uid": author.uid}).json()
        assert counts["code"] == 0, counts
    for index in range(FOLLOW_READS_AFTER_KILL):
        counts = client.get("/follow/counts", params={"uid": author.uid}).json()
        assert counts["code"] == 0, counts
        if index % 10 == 0:
            stack.wait_for_a_scrape()
        time.sleep(FOLLOW_READ_PAUSE_S)
    for aid in author.article_ids:
        assert client.get(f"/articles/pub/{aid}", headers=author.headers).json()["code"] == 0
    _probe_health(stack)
