"""Live edge values: the rate-limit rule table replaced under a running layer, the
concurrency cap moved, and the gateway settings that carry them."""

from __future__ import annotations

import pytest

from gateway.middleware.edge import Edge
from gateway.middleware.edge_settings import DEFAULT_RATE_LIMITS, EdgeSettings
from gateway.middleware.tests.conftest import client_for, layered_app
from gateway.middleware.tests.test_ratelimit import OUTER, limits_for, rule, statuses
from gateway.settings import GatewaySettings
from kit.liveconfig import ConfigInvalid, validate_changes


async def test_new_rules_apply_to_the_next_request_and_unchanged_ones_keep_their_counts() -> None:
    limits = limits_for(rule("probe", ["/probe"], limit=5), rule("other", ["/other"], limit=2))
    group = limits.rules_for(OUTER)
    app = layered_app(limits=limits, ip_rules=group)
    async with client_for(app) as client:
        assert await statuses(client, "/other", 1) == [404]
        assert await statuses(client, "/probe", 2) == [404, 404]
        kept = limits.rules[1]
        limits.replace([rule("probe", ["/probe"], limit=1), rule("other", ["/other"], limit=2)])
        assert limits.rules[1] is kept  # same config: same limiter, its count goes on
        assert [r.name for r in group] == ["probe", "other"]
        # The changed rule starts afresh, with its new limit of 1.
        assert await statuses(client, "/probe", 2) == [404, 429]
        assert await statuses(client, "/other", 2) == [404, 429]
        limits.replace([])
        assert len(group) == 0
        assert await statuses(client, "/probe", 3) == [404, 404, 404]


async def test_edge_apply_live_moves_the_cap_and_rules() -> None:
    edge = Edge(EdgeSettings(rate_limits=(), max_active_requests=4))
    assert edge.concurrency is not None
    edge.apply_live([rule("probe", ["/probe"], limit=1)], 2)
    assert edge.concurrency.max_active == 2
    assert [r.name for r in edge.ip_rules] == ["probe"]
    edge.apply_live([], None)  # unset: back to the edge settings' own cap
    assert edge.concurrency.max_active == 4
    assert len(edge.ip_rules) == 0
    off = Edge(EdgeSettings(rate_limits=(), max_active_requests=None))
    off.apply_live([], 3)  # logged: a cap that was off needs a restart
    assert off.concurrency is None


def _defaults() -> GatewaySettings:
    return GatewaySettings.model_validate({"mode": "dev"})


def test_live_rate_limits_are_validated_as_a_process_would() -> None:
    base = _defaults()
    assert base.effective_rate_limits == DEFAULT_RATE_LIMITS
    probe = {"name": "probe", "paths": ["/probe"], "key": "ip", "limit": 2, "period": 60}
    after = validate_changes(GatewaySettings, base, {}, {"rate_limits": [probe]})
    assert after == {"rate_limits": [probe]}
    for bad in (
        [{**probe, "limit": 0}],
        [probe, probe],
        [{**probe, "key": "device"}],
    ):
        with pytest.raises(ConfigInvalid) as refused:
            validate_changes(GatewaySettings, base, {}, {"rate_limits": bad})
        assert "rate_limits" in refused.value.errors
    with pytest.raises(ConfigInvalid) as restart_only:
        validate_changes(GatewaySettings, base, {}, {"edge": {}})
    assert "restart" in restart_only.value.errors["edge"]


def test_effective_edge_lays_the_live_values_over_the_edge_settings() -> None:
    settings = GatewaySettings.model_validate(
        {"mode": "dev", "rate_limits": [], "max_active_requests": 7}
    )
    assert settings.effective_edge.rate_limits == ()
    assert settings.effective_edge.max_active_requests == 7
    assert settings.edge.rate_limits == DEFAULT_RATE_LIMITS
