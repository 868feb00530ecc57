"""The SQL pool's bounds come from the service settings and reach SQLAlchemy's pool.

Each replica may hold ``pool_size + max_overflow`` MySQL connections, the figure the
connection budget (docs/persistence.md) adds up; a checkout on an exhausted pool fails after
the pool timeout. No server is needed: an engine connects on first use only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

from kit.config import GrpcServiceSettings
from kit.sql import create_engine
from kit.sql.engine import DEFAULT_POOL, PoolLimits

MYSQL_URL = "mysql+asyncmy://someone:pw@127.0.0.1:1/nothing"


def _queue_pool(url: str, pool: PoolLimits) -> QueuePool:
    engine = create_engine(url, pool=pool)
    queue = engine.sync_engine.pool
    assert isinstance(queue, QueuePool)
    return queue


def test_mysql_engines_get_the_limits_they_are_given() -> None:
    queue = _queue_pool(MYSQL_URL, PoolLimits(size=3, overflow=7, timeout_s=2.5))
    assert queue.size() == 3
    assert queue._max_overflow == 7
    assert queue._timeout == 2.5


def test_the_default_is_thirty_connections_per_process() -> None:
    assert DEFAULT_POOL.most == 30
    assert GrpcServiceSettings(mode="test").database_pool == DEFAULT_POOL
    queue = _queue_pool(MYSQL_URL, DEFAULT_POOL)
    assert queue.size() + queue._max_overflow == DEFAULT_POOL.most


def test_settings_name_the_pool() -> None:
    settings = GrpcServiceSettings(
        mode="test",
        database_pool_size=4,
        database_max_overflow=6,
        database_pool_timeout_seconds=3,
    )
    assert settings.database_pool == PoolLimits(size=4, overflow=6, timeout_s=3.0)
    assert settings.database_pool.most == 10
    with pytest.raises(ValueError, match="database_pool_size"):
        GrpcServiceSettings(mode="test", database_pool_size=0)


@pytest.mark.parametrize(
    ("size", "overflow", "timeout"), [(0, 5, 10.0), (5, -1, 10.0), (5, 5, 0.0)]
)
def test_impossible_limits_are_refused(size: int, overflow: int, timeout: float) -> None:
    with pytest.raises(ValueError, match="invalid pool limits"):
        PoolLimits(size=size, overflow=overflow, timeout_s=timeout)


def test_sqlite_keeps_its_own_pool(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}"
    engine = create_engine(url, pool=PoolLimits(size=1, overflow=0, timeout_s=1.0))
    pool = engine.sync_engine.pool
    # SQLAlchemy's defaults for a file (one writer at a time anyway), not the MySQL bounds.
    assert not (isinstance(pool, QueuePool) and pool.size() == 1 and pool._max_overflow == 0)
