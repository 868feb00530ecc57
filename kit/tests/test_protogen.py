"""The committed ``gen/`` tree must match what ``make proto`` produces from ``protos/``."""

from __future__ import annotations

import filecmp
from pathlib import Path

from kit.protogen import generate

ROOT = Path(__file__).resolve().parents[2]


def _tree(base: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(base)): p
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generate(ROOT / "protos", tmp_path)
    expected, committed = _tree(tmp_path), _tree(ROOT / "gen")
    assert sorted(expected) == sorted(committed), "gen/ is stale: run `make proto`"
    stale = [
        name
        for name, path in expected.items()
        if not filecmp.cmp(path, committed[name], shallow=False)
    ]
    assert not stale, f"gen/ is stale (run `make proto`): {stale}"


def test_generated_imports_need_no_post_processing() -> None:
    from webook.events.v1 import events_pb2
    from webook.user.v1 import user_pb2, user_pb2_grpc

    assert user_pb2.DESCRIPTOR.package == "webook.user.v1"
    assert hasattr(user_pb2_grpc, "UserServiceStub")
    assert events_pb2.ArticleRead(article_id=1).article_id == 1
