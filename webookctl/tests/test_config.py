"""``config get/set/diff/history/rollback/copy`` on a real etcd, through kit.liveconfig.

Each test works in environments of its own (random names) on the session's etcd; what was
or was not written is read back from etcd directly, under the configuration centre's roots.
The settings used are the gateway's and the user service's live ones (``log_level``,
``trace_sample_ratio``) and restart-only ones (``redis_url``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aetcd
import pytest

from devstack.credentials import SecureEtcd
from devstack.infra import free_port
from kit.liveconfig import HISTORY_ROOT, KEY_ROOT
from webookctl.tests.run import Result, run

pytestmark = pytest.mark.integration


@pytest.fixture
def env() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def etcd(etcd_endpoint: str) -> AsyncIterator[aetcd.Client]:
    host, _, port = etcd_endpoint.rpartition(":")
    async with aetcd.Client(host, int(port), timeout=10) as client:
        yield client


async def _stored(etcd: aetcd.Client, env: str) -> dict[str, str]:
    """Every key the configuration centre holds for ``env`` (values and history)."""
    found: dict[str, str] = {}
    for root in (KEY_ROOT, HISTORY_ROOT):
        for kv in await etcd.get_prefix(f"{root}/{env}/".encode()):
            found[kv.key.decode()] = kv.value.decode()
    return found


async def ctl(etcd_endpoint: str, env: str, *argv: str, stdin: str = "") -> Result:
    """``webookctl --etcd ... --env ENV argv``."""
    return await run("--etcd", etcd_endpoint, "--env", env, *argv, stdin=stdin)


async def test_set_get_and_history(etcd_endpoint: str, env: str) -> None:
    first = await ctl(
        etcd_endpoint, env, "--json", "config", "set", "gateway",
        "log_level=DEBUG", "trace_sample_ratio=0.25", "--why", "incident 42", "--who", "ada",
    )  # fmt: skip
    assert first.status == 0, first.err
    written = first.json()
    assert written["revision"] > 0
    assert {k: v for k, v in written.items() if k != "revision"} == {
        "env": env,
        "service": "gateway",
        "version": 1,
        "values": {"log_level": "DEBUG", "trace_sample_ratio": 0.25},
        "changes": {"log_level": "DEBUG", "trace_sample_ratio": 0.25},
    }
    second = await ctl(
        etcd_endpoint, env, "config", "set", "gateway", "--unset", "log_level", "--why", "done"
    )
    assert second.status == 0, second.err
    assert second.out == f"gateway in {env}: version 2\n  log_level unset\n"

    got = await ctl(etcd_endpoint, env, "--json", "config", "get", "gateway", "--live")
    assert got.status == 0, got.err
    document = got.json()
    assert (document["version"], document["values"]) == (2, {"trace_sample_ratio": 0.25})
    assert {"log_level", "trace_sample_ratio"} <= set(document["live_keys"])
    assert "redis_url" not in document["live_keys"]
    human = await ctl(etcd_endpoint, env, "config", "get", "gateway")
    assert human.out == f"gateway in {env}: version 2\n  trace_sample_ratio = 0.25\n"

    history = await ctl(etcd_endpoint, env, "--json", "config", "history", "gateway")
    assert history.status == 0, history.err
    changes = history.json()["changes"]
    assert [(c["version"], c["who"], c["why"]) for c in changes][1] == (1, "ada", "incident 42")
    assert changes[0]["before"] == {"log_level": "DEBUG", "trace_sample_ratio": 0.25}
    assert changes[0]["after"] == {"trace_sample_ratio": 0.25}
    table = await ctl(etcd_endpoint, env, "config", "history", "gateway", "--limit", "1")
    header, row = table.out.splitlines()
    assert header.split()[:4] == ["VERSION", "AT", "WHO", "WHY"]
    assert row.startswith("2 ")
    assert 'log_level: "DEBUG" → -' in row


async def test_a_service_with_nothing_remote(etcd_endpoint: str, env: str) -> None:
    result = await ctl(etcd_endpoint, env, "config", "get", "user")
    assert result.status == 0, result.err
    assert result.out == (
        f"user in {env}: version 0\n  (no remote values: the processes' own settings apply)\n"
    )
    empty = await ctl(etcd_endpoint, env, "config", "history", "user")
    assert empty.out == f"user in {env}: no changes recorded\n"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("trace_sample_ratio=1.5", "trace_sample_ratio: "),
        ("trace_sample_ratio=lots", "trace_sample_ratio: "),
        ("redis_url=redis://elsewhere:6379/0", "redis_url: not a live setting"),
        ("no_such_setting=1", "no_such_setting: unknown setting"),
    ],
)
async def test_invalid_writes_are_refused_before_etcd(
    etcd_endpoint: str, env: str, etcd: aetcd.Client, assignment: str, message: str
) -> None:
    result = await ctl(
        etcd_endpoint, env, "config", "set", "gateway", "log_level=DEBUG", assignment,
        "--why", "try",
    )  # fmt: skip
    assert result.status == 1
    assert result.out == ""
    assert result.err.startswith("webookctl: refused, nothing written: ")
    assert message in result.err
    assert result.err.count("\n") == 1
    assert await _stored(etcd, env) == {}


async def test_rollback_restores_the_exact_values(
    etcd_endpoint: str, env: str, etcd: aetcd.Client
) -> None:
    for assignments in (
        ["log_level=DEBUG", "trace_sample_ratio=0.5"],
        ["log_level=WARNING"],
        ["--unset", "trace_sample_ratio"],
    ):
        step = await ctl(etcd_endpoint, env, "config", "set", "user", *assignments, "--why", "s")
        assert step.status == 0, step.err
    result = await ctl(
        etcd_endpoint, env, "--json", "config", "rollback", "user", "1", "--why", "back"
    )
    assert result.status == 0, result.err
    document = result.json()
    assert (document["version"], document["restored"]) == (4, 1)
    assert document["values"] == {"log_level": "DEBUG", "trace_sample_ratio": 0.5}
    got = await ctl(etcd_endpoint, env, "--json", "config", "get", "user")
    assert got.json()["values"] == {"log_level": "DEBUG", "trace_sample_ratio": 0.5}
    stored = await _stored(etcd, env)
    assert stored[f"{KEY_ROOT}/{env}/user/trace_sample_ratio"] == "0.5"

    unknown = await ctl(etcd_endpoint, env, "config", "rollback", "user", "99", "--why", "x")
    assert unknown.status == 1
    assert "99" in unknown.err
    assert unknown.err.count("\n") == 1


async def test_diff_then_copy_after_confirmation(etcd_endpoint: str, env: str) -> None:
    target = env + "-prod"
    for where, assignments in (
        (env, ["log_level=DEBUG", "trace_sample_ratio=0.1"]),
        (target, ["log_level=INFO"]),
    ):
        step = await ctl(
            etcd_endpoint, where, "config", "set", "gateway", *assignments, "--why", "s"
        )
        assert step.status == 0, step.err

    diff = await ctl(etcd_endpoint, env, "--json", "config", "diff", "gateway", "--to", target)
    assert diff.status == 0, diff.err
    assert diff.json() == {
        "service": "gateway",
        "from": env,
        "to": target,
        "differences": {
            "log_level": {"from": "DEBUG", "to": "INFO"},
            "trace_sample_ratio": {"from": 0.1, "to": None},
        },
    }
    table = await ctl(etcd_endpoint, env, "config", "diff", "gateway", "--to", target)
    assert table.out.splitlines()[0].split() == ["KEY", env, target]
    assert table.out.splitlines()[2].split() == ["trace_sample_ratio", "0.1", "-"]

    refused = await ctl(
        etcd_endpoint, env, "config", "copy", "gateway", "--to", target, "--why", "go",
        stdin="n\n",
    )  # fmt: skip
    assert refused.status == 1
    assert "copy 2 key(s) of gateway" in refused.err
    assert refused.err.endswith("webookctl: copy cancelled; nothing written\n")
    unchanged = await ctl(etcd_endpoint, target, "--json", "config", "get", "gateway")
    assert unchanged.json()["values"] == {"log_level": "INFO"}

    agreed = await ctl(
        etcd_endpoint, env, "--json", "config", "copy", "gateway", "--to", target, "--why", "go",
        stdin="yes\n",
    )  # fmt: skip
    assert agreed.status == 0, agreed.err
    document = agreed.json()
    assert (document["env"], document["version"]) == (target, 2)
    assert document["values"] == {"log_level": "DEBUG", "trace_sample_ratio": 0.1}
    same = await ctl(etcd_endpoint, env, "config", "diff", "gateway", "--to", target)
    assert same.out == f"gateway: {env} and {target} hold the same values\n"
    again = await ctl(
        etcd_endpoint, env, "config", "copy", "gateway", "--to", target, "--why", "go", "--yes"
    )
    assert again.status == 0
    assert "nothing to copy" in again.out


async def test_copy_refuses_values_the_target_schema_refuses(
    etcd_endpoint: str, env: str, etcd: aetcd.Client
) -> None:
    # A restart-only key written to etcd by hand (not through webookctl) is not copied on.
    await etcd.put(f"{KEY_ROOT}/{env}/gateway/redis_url".encode(), b'"redis://x:1/0"')
    target = env + "-prod"
    result = await ctl(
        etcd_endpoint, env, "config", "copy", "gateway", "--to", target, "--why", "go", "--yes"
    )
    assert result.status == 1
    assert "redis_url: not a live setting" in result.err
    assert await _stored(etcd, target) == {}


async def test_etcd_unreachable_fails_in_one_line(env: str) -> None:
    port = free_port()
    result = await run("--etcd", f"127.0.0.1:{port}", "--env", env, "config", "get", "gateway")
    assert result.status == 1
    assert result.err.startswith(f"webookctl: configuration centre at 127.0.0.1:{port}: ")
    assert result.err.count("\n") == 1


async def test_a_user_without_the_role_cannot_write(
    secure_etcd: SecureEtcd, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def set_as(username: str, password: str) -> Result:
        monkeypatch.setenv("WEBOOKCTL_ETCD_PASSWORD", password)
        return await run(
            "--etcd", secure_etcd.endpoint, "--etcd-user", username, "--env", env,
            "config", "set", "gateway", "log_level=DEBUG", "--why", "try",
        )  # fmt: skip

    workload = secure_etcd.credentials.workload("gateway")
    refused = await set_as(workload.username, workload.password)
    assert refused.status == 1
    assert refused.err.startswith(f"webookctl: configuration centre at {secure_etcd.endpoint}: ")
    assert refused.err.count("\n") == 1
    wrong = await set_as(workload.username, "not-the-password")
    assert wrong.status == 1
    assert "not-the-password" not in wrong.err
    root = secure_etcd.credentials.etcd_root
    allowed = await set_as(root.username, root.password)
    assert allowed.status == 0, allowed.err
