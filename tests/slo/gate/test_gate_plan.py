"""The gate's pure parts: slice plan, spec resolution, waiting for spans, the summary."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from slo.errors import SourceError
from slo.gate import (
    embedded_spec_path,
    free_port_range,
    plan_slices,
    resolve_spec_path,
    summary_text,
    wait_for_spans,
)
from slo.judge.spec import load_spec
from slo.ports import check_bindable


def test_slices_interleave_abba_with_equal_counts() -> None:
    plan = plan_slices(4.0, 1.0, with_baseline=True)
    assert plan == ["baseline", "candidate", "candidate", "baseline"] * 2
    assert plan.count("baseline") == plan.count("candidate") == 4
    assert plan_slices(3.0, 1.5, with_baseline=True).count("candidate") == 2
    assert plan_slices(5.0, 2.0, with_baseline=False) == ["candidate"] * 3


def test_embedded_spec_is_the_repository_spec_and_valid() -> None:
    path = Path(embedded_spec_path())
    assert path.is_file()
    root = Path(__file__).resolve().parents[3] / "slo.yaml"
    assert path.read_text() == root.read_text(), "copy slo.yaml to slo/defaults/slo.yaml"
    assert load_spec(str(path)).slos


def test_spec_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_spec_path("x.yaml") == "x.yaml"
    assert resolve_spec_path(None) == embedded_spec_path()
    (tmp_path / "slo.yaml").write_text("version: 1\n")
    assert resolve_spec_path("") == "slo.yaml"


@dataclass
class _Run:
    run_id: str
    spans: int


class _Store:
    """Counts growing for a few polls, then stable."""

    def __init__(self, counts: list[int], fail_first: int = 0) -> None:
        self.counts = counts
        self.fail_first = fail_first
        self.calls = 0

    def runs(self) -> list[_Run]:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise SourceError("store not there yet")
        n = self.counts[min(self.calls - 1, len(self.counts) - 1)]
        return [_Run("a", n), _Run("other", 999)]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """A fake monotonic clock that `sleep` (below) advances: waiting tests take no time."""
    import slo.gate as gate

    now = {"t": 0.0}
    monkeypatch.setattr(gate.time, "monotonic", lambda: now["t"])
    return now


def test_wait_for_spans_returns_once_stable(clock: dict[str, float]) -> None:
    def sleep(s: float) -> None:
        clock["t"] += s

    store = _Store([0, 10, 20, 30, 30, 30, 30, 30, 30, 30], fail_first=1)
    assert wait_for_spans(store, ["a"], settle=1.0, poll=0.25, sleep=sleep) == 30
    store = _Store([5] * 1000)
    # fewer spans than expected: waits at least max(settle, 5 s), not forever
    assert wait_for_spans(store, ["a"], expected_roots=50, settle=1.0, poll=0.25,
                          timeout=30, sleep=sleep) == 5


def test_wait_for_spans_waits_for_until_and_overlaps_the_settling(
        clock: dict[str, float]) -> None:
    """The gate waits for Locust's exit (its last client spans); the quiet time runs meanwhile."""
    def sleep(s: float) -> None:
        clock["t"] += s

    store = _Store([10, 20, 30])
    exited_at = 3.0
    got = wait_for_spans(store, ["a"], settle=0.5, poll=0.1, sleep=sleep,
                         until=lambda: clock["t"] >= exited_at)
    assert got == 30
    # stable long before the exit: returns at the exit, not a settle later
    assert exited_at <= clock["t"] < exited_at + 0.15
    # the span count seen after the exit still has to be quiet for `settle`
    clock["t"] = 0.0
    store = _Store([10] * 30 + [40] * 1000)  # the exit's flush lands at ~3 s
    assert wait_for_spans(store, ["a"], settle=0.5, poll=0.1, sleep=sleep,
                          until=lambda: clock["t"] >= exited_at) == 40
    assert clock["t"] >= exited_at + 0.5
    # never true: the timeout still ends the wait
    clock["t"] = 0.0
    assert wait_for_spans(_Store([7]), ["a"], settle=0.5, poll=0.1, timeout=2.0,
                          sleep=sleep, until=lambda: False) == 7
    assert 2.0 <= clock["t"] < 2.2


def test_wait_for_spans_with_nothing_to_settle_reads_the_store_once_until_holds(
        clock: dict[str, float]) -> None:
    """A target that flushes on stop (settle 0): while its processes exit, nothing is counted
    (each count reads the store: CPU the exiting processes need); once they are gone, one."""
    def sleep(s: float) -> None:
        clock["t"] += s

    store = _Store([10, 20, 30])
    assert wait_for_spans(store, ["a"], settle=0.0, poll=0.05, sleep=sleep,
                          until=lambda: clock["t"] >= 1.0) == 10
    assert store.calls == 1
    assert 1.0 <= clock["t"] < 1.1


def test_summary_names_failures_and_findings() -> None:
    report = {
        "verdict": "fail", "run_id": "c", "baseline_run_id": "b",
        "results": [
            {"slo": "stock", "objective": "latency_regression", "kind": "regression",
             "status": "fail", "unit": "ms", "observed": 30.0, "budget": 0.03, "baseline": 2.0,
             "explanation": "index gone", "trace_id": "abc"},
            {"slo": "x", "objective": "error_rate", "status": "pass", "unit": "ratio",
             "observed": 0.0, "budget": 0.01},
        ],
        "findings": [{"detector": "n_plus_one", "service": "s", "span": "p", "fails": True,
                      "message": "20 queries"}],
    }
    text = summary_text(report, "reports")
    assert "FAIL" in text.splitlines()[0] and "1/2 results pass" in text
    assert "stock latency_regression" in text and "index gone" in text and "abc" in text
    # a regression's budget is the allowed increase, in the words of every other report
    assert "observed 30.0 ms, budget +3% vs baseline, baseline 2.00 ms" in text
    assert "n_plus_one" in text and "reports/slo-report.html" in text


def test_free_port_range_is_bindable() -> None:
    base = free_port_range(5)
    for p in range(base, base + 5):
        check_bindable(p)
    assert os.environ is not None


def test_sut_switch_drains_the_last_slice_before_flipping_bugs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests sent with the last slice's run id must finish under its bugs: the pause comes
    before the flip, and a boundary between two slices of one side flips nothing."""
    from slo.gate.sut import SutTarget

    events: list[tuple[str, object]] = []

    class FakeGate:
        def sleep(self, seconds: float) -> None:
            events.append(("sleep", seconds))

    target = SutTarget(["n_plus_one"])
    target.gate = FakeGate()  # type: ignore[assignment]
    target.current = []
    monkeypatch.setattr(target, "admin_bugs", lambda bugs: events.append(("bugs", bugs)))
    for side in ("candidate", "candidate", "baseline", "baseline"):
        target.switch(side)
    assert events == [("sleep", SutTarget.switch_drain), ("bugs", ["n_plus_one"]),
                      ("sleep", SutTarget.switch_drain), ("bugs", [])]
    assert SutTarget.switch_drain >= 0.1  # longer than Locust's run-id poll (50 ms)


def test_drive_gaps_only_where_the_side_changes(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side switch gets the no-run-id gap; two slices of one side follow each other with
    none (a request straddling that boundary went to the same side either way), and every
    slice gets its own run id for the pairing."""
    from slo.gate import Gate, GateConfig
    from slo.gate.base import Target

    class FakeTarget(Target):
        kind = "fake"
        separate_hosts = False

        def start(self, gate: Gate) -> None: ...

        def host(self, side: str) -> str:
            return ""

        def switch(self, side: str) -> None:
            events.append(("switch", side))

    events: list[tuple[str, object]] = []
    gate = Gate(GateConfig(duration=2.0, slice_seconds=0.5, warmup=0.0, gap=0.2,
                           workdir=str(tmp_path)), out=lambda s: None, target=FakeTarget())
    monkeypatch.setattr(gate, "_wait_for_traffic", lambda: None)
    monkeypatch.setattr(gate, "sleep", lambda s: events.append(("sleep", s)))
    monkeypatch.setattr(gate, "set_slice",
                        lambda run_id, side=None: events.append(("slice", run_id[-3:])))
    ids = gate.drive(None)  # type: ignore[arg-type]
    after_warmup = events[events.index(("sleep", 0.0), 2) + 1:]
    assert after_warmup == [
        ("slice", ""), ("switch", "baseline"), ("sleep", 0.2), ("slice", "b00"), ("sleep", 0.5),
        ("slice", ""), ("switch", "candidate"), ("sleep", 0.2), ("slice", "c01"),
        ("sleep", 0.5), ("slice", "c02"), ("sleep", 0.5),
        ("slice", ""), ("switch", "baseline"), ("sleep", 0.2), ("slice", "b03"),
        ("sleep", 0.5), ("slice", "b04"), ("sleep", 0.5),
        ("slice", ""), ("switch", "candidate"), ("sleep", 0.2), ("slice", "c05"),
        ("sleep", 0.5), ("slice", "c06"), ("sleep", 0.5),
        ("slice", ""), ("switch", "baseline"), ("sleep", 0.2), ("slice", "b07"),
        ("sleep", 0.5), ("slice", ""),
    ]
    assert [i[-3:] for i in ids["baseline"]] == ["b00", "b03", "b04", "b07"]
    assert [i[-3:] for i in ids["candidate"]] == ["c01", "c02", "c05", "c06"]


@pytest.mark.parametrize("separate_hosts", [False, True])
@pytest.mark.parametrize("ran", [0.0, 1.0, 2.0, 5.0])
def test_the_warm_up_counts_from_when_the_load_began_to_flow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, separate_hosts: bool, ran: float) -> None:
    """The time it took to see the first warm-up spans arrive was warm-up already run: the
    gate sleeps only the rest. Two deployments: each side still gets its half (the
    candidate's starts when the gate switches to it)."""
    import types

    import slo.gate.core as core
    from slo.gate import Gate, GateConfig
    from slo.gate.base import Target

    class FakeTarget(Target):
        kind = "fake"

        def start(self, gate: Gate) -> None: ...

        def host(self, side: str) -> str:
            return ""

    FakeTarget.separate_hosts = separate_hosts
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(core, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    gate = Gate(GateConfig(duration=0.5, slice_seconds=0.5, warmup=3.0, gap=0.0,
                           workdir=str(tmp_path)), out=lambda s: None, target=FakeTarget())
    monkeypatch.setattr(gate, "_wait_for_traffic", lambda: clock.now - ran)
    monkeypatch.setattr(gate, "sleep", sleep)
    monkeypatch.setattr(gate, "set_slice", lambda run_id, side=None: None)
    gate.drive(None)  # type: ignore[arg-type]
    baseline_half = max(0.0, 1.5 - ran)
    candidate_half = 1.5 if separate_hosts else min(1.5, max(0.0, 3.0 - ran))
    assert sleeps[:2] == [pytest.approx(baseline_half), pytest.approx(candidate_half)]
    # one deployment: spans that started earlier than those first seen arrive during the
    # first half (their exporter's batch delay); the rest counts from the earliest
    sleeps.clear()
    began = clock.now - ran
    monkeypatch.setattr(gate, "_wait_for_traffic", lambda: began)
    monkeypatch.setattr(gate, "_load_began", lambda: began - 0.5)
    gate.drive(None)  # type: ignore[arg-type]
    if not separate_hosts:
        candidate_half = max(0.0, candidate_half - 0.5)
    assert sleeps[:2] == [pytest.approx(baseline_half), pytest.approx(candidate_half)]


def test_the_load_begins_with_the_first_warm_up_span_once_the_target_is_ready(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first warm-up span's start (on the gate's clock), but never before the wait began
    (earlier spans are Locust's refused requests before the target was ready) nor after now
    (a clock ahead); a remote target's clock is not trusted at all."""
    import time

    import slo.ingest.store as store_mod
    from slo.gate import Gate, GateConfig
    from slo.gate.sut import SutTarget
    from slo.ingest.store import RunInfo

    gate = Gate(GateConfig(workdir=str(tmp_path)), out=lambda s: None, target=SutTarget([]))
    first_ns = {"start": 0}

    class FakeStore:
        def __init__(self, path: object) -> None: ...

        def runs(self) -> list[RunInfo]:
            return [RunInfo("other", 5, 1, 0, 1),
                    RunInfo(f"{gate.gate_id}-warmup", 3, 1, first_ns["start"], first_ns["start"])]

    monkeypatch.setattr(store_mod, "SpanStore", FakeStore)
    # the wait takes 0.3 s; the first span started 0.1 s before it ended: inside the wait
    real_wait = gate.wait_until

    def slow_wait(*a: object, **kw: object) -> None:
        time.sleep(0.3)
        first_ns["start"] = time.time_ns() - 100_000_000
        real_wait(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(gate, "wait_until", slow_wait)
    began = gate._wait_for_traffic()
    assert began is not None and time.monotonic() - began == pytest.approx(0.1, abs=0.05)
    for offset_s, expect in ((-60.0, 0.3), (60.0, 0.0)):  # before the wait; in the future
        def wait(*a: object, offset_s: float = offset_s, **kw: object) -> None:
            time.sleep(0.3)
            first_ns["start"] = time.time_ns() + int(offset_s * 1e9)
            real_wait(*a, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(gate, "wait_until", wait)
        began = gate._wait_for_traffic()
        assert began is not None and time.monotonic() - began == pytest.approx(expect, abs=0.05)
    monkeypatch.setattr(SutTarget, "local", False)
    assert gate._wait_for_traffic() is None


class _FakeProc:
    """A process that exits `after` polls of `alive()` once its exit has begun (at once for
    Locust, SIGTERMed before the wait; at `terminate()` for the others)."""

    def __init__(self, name: str, events: list[str], after: int, exiting: bool = False) -> None:
        self.name, self.events, self.after, self.exiting = name, events, after, exiting

    def alive(self) -> bool:
        if self.exiting and self.after > 0:
            self.after -= 1
            if self.after == 0:
                self.events.append(f"{self.name} exited")
        return not (self.exiting and self.after == 0)

    def terminate(self) -> None:
        if not self.exiting:
            self.events.append(f"{self.name} terminated")
        self.exiting = True


@pytest.mark.parametrize("keep", [False, True])
def test_the_last_spans_are_read_once_the_stopped_sut_has_flushed_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    """The SUT exports once a second under load and flushes the rest as it stops: the gate
    stops it only after Locust has exited (no service goes while a request of the last slice
    is still being answered) and reads only once it has exited, with no extra quiet time.
    Kept running (--keep) it is not stopped: the gate waits for its batch delays of quiet."""
    import slo.gate.core as core
    from slo.gate import Gate, GateConfig
    from slo.gate.sut import SutTarget

    events: list[str] = []
    locust = _FakeProc("locust", events, after=3, exiting=True)
    sut = _FakeProc("sut", events, after=4)
    collector = _FakeProc("collector", events, after=1)
    gate = Gate(GateConfig(workdir=str(tmp_path), keep=keep), out=lambda s: None,
                target=SutTarget([]))
    gate._collector = collector  # type: ignore[assignment]
    monkeypatch.setattr(Gate, "procs", property(lambda self: [collector, sut, locust]))
    seen: dict[str, float] = {}

    def wait(store: object, ids: list[str], *, settle: float, until: object, **kw: object) -> int:
        seen["settle"] = settle
        while not until():  # type: ignore[operator]
            events.append("poll")
        events.append("read")
        return 0

    monkeypatch.setattr(core, "wait_for_spans", wait)
    gate.await_last_spans(object(), ["r-c01"])
    if keep:
        assert "sut terminated" not in events and seen["settle"] == SutTarget.span_settle
    else:
        assert events.index("locust exited") < events.index("sut terminated")
        assert events.index("sut exited") < events.index("read")
        assert seen["settle"] == 0.0
    assert "collector terminated" not in events
