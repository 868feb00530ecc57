"""``search reindex``: the search service's offline rebuild, run by webookctl where the index is.

The rebuild reads its sources from fake article and user services on a real gRPC port
(the search service's own test fakes); its settings come from a settings file, as an
operator would pass the replica's (``--env-file``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.infra import free_port
from services.search.tests.sources import serving_sources
from webookctl.tests.run import run

pytestmark = pytest.mark.integration


def _settings_file(tmp_path: Path, peers: dict[str, str]) -> Path:
    path = tmp_path / "search.env"
    path.write_text(
        "\n".join(
            [
                "WEBOOK_SEARCH_MODE=test",
                f"WEBOOK_SEARCH_DATA_DIR={tmp_path / 'index'}",
                "WEBOOK_SEARCH_ETCD_ENDPOINTS=[]",
                f"WEBOOK_SEARCH_PEERS={json.dumps(peers)}",
                "WEBOOK_SEARCH_METRICS_PORT=-1",
                "WEBOOK_SEARCH_REINDEX_CALL_TIMEOUT_SECONDS=5",
            ]
        )
        + "\n"
    )
    return path


async def test_reindex_rebuilds_and_reports_the_counts(tmp_path: Path) -> None:
    async with serving_sources() as sources:
        sources.articles.publish(1, "微服务架构", "<p>服务发现</p>", 1000)
        sources.articles.publish(2, "限流算法", "<p>token bucket</p>", 2000)
        sources.users.add(7, "安妮", "", 1000)
        settings = _settings_file(tmp_path, sources.peers)
        result = await run("--json", "search", "reindex", "--env-file", str(settings))
        assert result.status == 0, result.err
        counts = result.json()
        assert (counts["articles"], counts["users"], counts["removed"]) == (2, 1, 0)
        human = await run("search", "reindex", "--env-file", str(settings))
    assert human.status == 0, human.err
    assert human.out.startswith("index rebuilt: applied ")
    assert "articles 2" in human.out
    assert (tmp_path / "index").is_dir()


async def test_sources_unreachable_fail_in_one_line(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    settings = _settings_file(tmp_path, {"article": nobody, "user": nobody})
    result = await run("search", "reindex", "--env-file", str(settings))
    assert result.status == 1
    assert result.out == ""
    assert result.err.startswith("webookctl: ")
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err
