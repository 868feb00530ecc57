"""Links from the ``traceparent`` values events carry in their payload."""

from __future__ import annotations

from kit.events.tracing import MAX_LINKS, traceparent_links


def _traceparent(span_id: int) -> str:
    return f"00-0af7651916cd43dd8448eb211c80319c-{span_id:016x}-01"


def test_distinct_well_formed_values_become_links_in_order() -> None:
    links = traceparent_links(
        [_traceparent(2), "", "not a traceparent", _traceparent(1), _traceparent(2)]
    )
    assert [(link.context.span_id, link.context.is_remote) for link in links] == [
        (2, True),
        (1, True),
    ]
    assert all(link.context.trace_flags.sampled for link in links)


def test_at_most_max_links() -> None:
    assert len(traceparent_links(_traceparent(n) for n in range(1, 2 * MAX_LINKS))) == MAX_LINKS
