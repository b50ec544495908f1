"""Critical path: Jaeger UI's walk, its self times, and broken traces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo.judge.critical_path import critical_path, self_times


def sp(sid, parent, start, dur, service="svc", name=None):
    return {"span_id": sid, "parent_span_id": parent, "service": service, "name": name or sid,
            "kind": "internal", "start_ms": start, "duration_ms": dur, "attributes": {}}


def tr(*spans):
    return {"trace_id": "t", "spans": list(spans)}


def test_parallel_children_only_the_slower_is_critical():
    t = tr(sp("root", "", 0, 100), sp("fast", "root", 10, 20), sp("slow", "root", 10, 80))
    assert critical_path(t) == ["root", "slow"]
    assert self_times(t) == pytest.approx({"root": 20.0, "slow": 80.0})


def test_sequential_children_are_all_critical():
    t = tr(sp("root", "", 0, 100), sp("a", "root", 5, 30), sp("b", "root", 40, 50))
    assert critical_path(t) == ["root", "a", "b"]
    assert self_times(t) == pytest.approx({"root": 20.0, "a": 30.0, "b": 50.0})


def test_overlapping_child_that_ends_after_the_next_critical_start_is_skipped():
    # b is last to finish; a overlaps b's start, so the path jumps from b to before a.
    t = tr(sp("root", "", 0, 100), sp("a", "root", 10, 50), sp("b", "root", 40, 50),
           sp("c", "root", 0, 5))
    assert critical_path(t) == ["root", "c", "b"]
    times = self_times(t)
    assert times["b"] == pytest.approx(50.0)
    assert times["c"] == pytest.approx(5.0)
    assert times["root"] == pytest.approx(45.0)


def test_nested_self_time():
    t = tr(sp("root", "", 0, 50), sp("call", "root", 5, 40), sp("server", "call", 6, 38),
           sp("query", "server", 10, 30))
    times = self_times(t)
    assert times["query"] == pytest.approx(30.0)
    assert times["server"] == pytest.approx(8.0)
    assert times["call"] == pytest.approx(2.0)
    assert times["root"] == pytest.approx(10.0)


def test_child_overflowing_its_parent_is_clipped():
    # Clock skew: the child claims to end after its parent.
    t = tr(sp("root", "", 0, 10), sp("child", "root", 5, 20))
    times = self_times(t)
    assert times["child"] == pytest.approx(5.0)
    assert sum(times.values()) == pytest.approx(10.0)


def test_broken_trace_with_two_roots_and_an_orphan():
    t = tr(sp("root", "", 0, 30), sp("orphan", "missing", 40, 20), sp("other", "", 42, 3))
    path = critical_path(t)
    assert path == ["root", "orphan"]
    assert self_times(t)["orphan"] == pytest.approx(20.0)


def test_parent_cycle_and_empty_trace_do_not_crash():
    t = tr(sp("a", "b", 0, 10), sp("b", "a", 0, 10))
    assert critical_path(t) == []  # nothing reachable from a root...
    assert self_times({"spans": []}) == {}
    assert critical_path({"trace_id": "x"}) == []


spans_strategy = st.lists(
    st.tuples(st.integers(0, 100), st.integers(0, 60), st.integers(-1, 30)),
    min_size=1, max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(spans_strategy)
def test_self_times_never_exceed_the_trace_and_cover_the_main_root(raw):
    spans = []
    for i, (start, dur, parent) in enumerate(raw):
        p = f"s{parent}" if 0 <= parent < i else ""
        spans.append(sp(f"s{i}", p, float(start), float(dur)))
    t = tr(*spans)
    times = self_times(t)
    lo = min(s["start_ms"] for s in spans)
    hi = max(s["start_ms"] + s["duration_ms"] for s in spans)
    assert sum(times.values()) <= hi - lo + 1e-6
    assert all(v >= -1e-9 for v in times.values())
    assert set(critical_path(t)) == set(times)
    # The span that ends last is always on the path (nothing can cover its end).
    last = max(spans, key=lambda s: (s["start_ms"] + s["duration_ms"]))
    ends = [s for s in spans if s["start_ms"] + s["duration_ms"] == hi and not s["parent_span_id"]]
    if ends:
        assert any(s["span_id"] in times for s in ends) or last["span_id"] in times


def test_exclusive_times_are_own_time_whether_critical_or_not():
    from slo.judge.critical_path import exclusive_segments, exclusive_times, union_ms

    t = tr(sp("root", "", 0, 100), sp("fast", "root", 10, 20), sp("slow", "root", 15, 80),
           sp("q", "fast", 12, 5))
    own = exclusive_times(t)
    assert own == pytest.approx({"root": 15.0, "fast": 15.0, "slow": 80.0, "q": 5.0})
    assert exclusive_segments(t)["fast"] == [(10.0, 12.0), (17.0, 30.0)]
    assert union_ms([(0, 2), (1, 3), (5, 6)]) == pytest.approx(4.0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 60), st.integers(0, 30)),
                min_size=1, max_size=30))
def test_single_root_self_times_add_up_to_its_duration(raw):
    spans = [sp("s0", "", float(raw[0][0]), float(raw[0][1]))]
    for i, (start, dur, parent) in enumerate(raw[1:], start=1):
        spans.append(sp(f"s{i}", f"s{parent % i}", float(start), float(dur)))
    times = self_times(tr(*spans))
    assert sum(times.values()) == pytest.approx(spans[0]["duration_ms"], abs=1e-6)
    assert "s0" in critical_path(tr(*spans))
