"""The pytest plugin: trace assertions in integration tests, and a spec check over a session.

Developers catch most performance mistakes one step before CI, in the integration tests they
run before pushing. The tools they use there (`assertNumQueries`, `nplusone`) see one process's
database; the traces see every query a request causes in every service it calls. So the plugin
runs an in-test OTLP collector (the real `slo.ingest.collector`, on free ports, into a temporary
store), the services under test export to it (`slo_collector.env()`), and:

- `slo_spans` (a function fixture) waits for the spans of the test's requests, joined by trace
  id, and answers questions in the spec's vocabulary:
  `assert slo_spans.slo(service="product-service", span="GET /products").db_queries <= 3`.
  The numbers come from `slo.judge.check.run_check` over the test's spans (nothing is counted twice
  in two places); a failing assertion names the worst request, its statements and the N+1
  findings, and the test report gets an "slo" section with the trace's text waterfall.
- `pytest --slo-spec slo.yaml` adds one test item at the end of the session that checks the
  whole spec over every span the session's tests caused: pass/fail/no_data per objective, in
  the terminal and in JUnit XML (one testcase, one property per objective).

Cheap when unused: importing this module imports pytest and the standard library only; the
collector, pyarrow and the checker are loaded when a fixture or `--slo-spec` asks for them.
It never imports locust.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from slo import units

if TYPE_CHECKING:
    import pyarrow as pa
    from _pytest._code.code import TerminalRepr
    from pluggy import Result

    from slo.ingest.collector import Running
    from slo.judge.spec import Spec

#: Seconds without a new span before a test's traces count as arrived.
QUIET_S = 0.5
#: Batch export delay handed to the services under test (ms): spans leave within this.
BSP_DELAY_MS = 100
#: Latency objectives a view answers, besides the counts and the error rate.
_LATENCIES = ("latency_p50", "latency_p90", "latency_p95", "latency_p99", "latency_max")
_COUNTS = ("db_queries", "repeated_queries", "span_count")
_STATE = pytest.StashKey["SloSession"]()
_RECORDER = pytest.StashKey["SpanRecorder"]()


# --------------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("slo", "trace-driven SLO assertions (slo-harness)")
    group.addoption("--slo-spec", metavar="PATH", default=None,
                    help="check this SLO spec over the spans the session's tests caused, as "
                         "one extra test result at the end")
    group.addoption("--slo-otlp-port", metavar="PORT", type=int, default=0,
                    help="OTLP/HTTP port of the in-test collector (default: a free port)")
    group.addoption("--slo-wait", metavar="SECONDS", type=float, default=10.0,
                    help="longest wait for a test's traces to arrive (default 10)")


def pytest_configure(config: pytest.Config) -> None:
    spec = None
    path = config.getoption("slo_spec", None)
    if path:
        from slo.errors import SloError
        from slo.judge.spec import load_spec

        try:
            spec = load_spec(path)
        except SloError as e:  # a usage error: one line, pytest's exit code 4
            raise pytest.UsageError(f"--slo-spec: {e}") from None
    config.stash[_STATE] = SloSession(config.getoption("slo_otlp_port", 0) or 0,
                                      config.getoption("slo_wait", 10.0), spec)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash[_STATE]
    if state.spec is not None:  # spans of session fixtures must be caught too
        state.collector()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    state = config.stash[_STATE]
    if state.spec is not None:
        name = f"slo-spec[{Path(state.spec.path).name}]"
        items.append(SpecItem.from_parent(session, name=name))


# ------------------------------------------------------------------------------- collector


class SloSession:
    """The session's collector, started on first use and stopped at the end."""

    def __init__(self, port: int, wait_s: float, spec: Spec | None) -> None:
        self.port = port
        self.wait_s = wait_s
        self.spec = spec
        self._running: Running | None = None
        self._dir: str | None = None

    def collector(self) -> SessionCollector:
        if self._running is None:
            from slo.ingest.collector import CollectorConfig, start

            self._dir = tempfile.mkdtemp(prefix="slo-pytest-")
            self._running = start(CollectorConfig(store=str(Path(self._dir) / "store"),
                                                  port=self.port, grpc_port=0,
                                                  idle_seconds=0.5))
        return SessionCollector(self._running, self.wait_s)

    def close(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class SessionCollector:
    """What tests see of the in-test collector: where to export, and the spans it got."""

    def __init__(self, running: Running, wait_s: float) -> None:
        self.running = running
        self.wait_s = wait_s
        self.store = running.collector.config.store

    @property
    def endpoint(self) -> str:
        """OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`)."""
        return f"http://127.0.0.1:{self.running.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.running.grpc_port}"

    def env(self) -> dict[str, str]:
        """Environment for a service under test: export OTLP/HTTP here, promptly."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": str(BSP_DELAY_MS)}

    def spans(self) -> pa.Table:
        """Every span received so far (all runs)."""
        from slo.ingest.spans import empty_table
        from slo.ingest.store import SpanStore

        store = SpanStore(self.store)
        runs = [r.run_id for r in store.runs()]
        return store.read(runs) if runs else empty_table()

    def settled(self, select: Callable[[pa.Table], pa.Table],
                done: Callable[[pa.Table], bool] = lambda t: True,
                timeout: float | None = None) -> pa.Table:
        """`select(all spans)` once `done` says it is whole and no new span came for
        QUIET_S, or whatever arrived when `timeout` (default --slo-wait) runs out."""
        deadline = time.monotonic() + (self.wait_s if timeout is None else timeout)
        last_n, quiet_since = -1, time.monotonic()
        while True:
            table = select(self.spans())
            now = time.monotonic()
            if table.num_rows != last_n:
                last_n, quiet_since = table.num_rows, now
            elif now - quiet_since >= QUIET_S and done(table):
                return table
            if now >= deadline:
                return table
            time.sleep(0.05)


def as_roots(table: pa.Table, outside: frozenset[str]) -> pa.Table:
    """The spans with parents in `outside` (the test's own, untraced requests) made roots."""
    if not outside or not table.num_rows:
        return table
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column("parent_span_id")
    ext = pc.is_in(col, pa.array(sorted(outside), pa.string()))
    i = table.column_names.index("parent_span_id")
    return table.set_column(i, "parent_span_id", pc.if_else(ext, "", col))


def whole(table: pa.Table) -> bool:
    """Every trace of the table complete (`slo.judge.completeness`): no parent and no callee's
    spans missing."""
    if table.num_rows == 0:
        return False
    from slo.judge.completeness import assess
    from slo.judge.tree import RunIndex

    c = assess(RunIndex(table))
    return c.complete == c.traces and c.missing_parents == 0


@pytest.fixture(scope="session")
def slo_collector(pytestconfig: pytest.Config) -> SessionCollector:
    """The session's in-test OTLP collector; start services with `slo_collector.env()`."""
    return pytestconfig.stash[_STATE].collector()


# -------------------------------------------------------------------------------- recorder


class SpanRecorder:
    """The spans one test's requests caused, across processes, joined by trace id.

    A test's traces are those started with `headers()` (a fresh `traceparent` per request and
    `baggage: slo.run_id=<this test's id>`), or any trace with a span carrying that run id;
    a test that sends no such headers gets the traces that began while it ran.
    """

    def __init__(self, collector: SessionCollector, test: str) -> None:
        self.collector = collector
        self.test = test
        self.run_id = "pytest-" + secrets.token_hex(6)
        self.start_ns = time.time_ns()
        self.trace_ids: set[str] = set()
        self.parent_ids: set[str] = set()
        self.failures: list[str] = []
        self._table: pa.Table | None = None
        self._report: tuple[pa.Table, dict[str, Any]] | None = None

    def headers(self) -> dict[str, str]:
        """Headers for one request: a new trace whose spans belong to this test."""
        tid, sid = secrets.token_hex(16), secrets.token_hex(8)
        self.trace_ids.add(tid)
        self.parent_ids.add(sid)
        self._table = None
        return {"traceparent": f"00-{tid}-{sid}-01", "baggage": f"slo.run_id={self.run_id}"}

    def _mine(self, spans: pa.Table) -> pa.Table:
        import pyarrow as pa
        import pyarrow.compute as pc

        if spans.num_rows == 0:
            return spans
        tids = set(self.trace_ids)
        tagged = spans.filter(pc.equal(spans["run_id"], self.run_id))
        tids |= set(tagged.column("trace_id").to_pylist())
        if not tids:  # no headers: the traces that began while the test ran
            first = spans.group_by("trace_id").aggregate([("start_ns", "min")])
            began = first.filter(pc.greater_equal(first["start_ns_min"], self.start_ns))
            tids = set(began.column("trace_id").to_pylist())
        return spans.filter(pc.is_in(spans["trace_id"], pa.array(sorted(tids), pa.string())))

    def table(self, refresh: bool = False) -> pa.Table:
        """This test's spans, once they have all arrived (cached until `headers()` again)."""
        if self._table is None or refresh:
            outside = frozenset(self.parent_ids)
            wanted = set(self.trace_ids)

            def mine(spans: pa.Table) -> pa.Table:
                # the test itself is the untraced client: its requests' spans are the roots
                return as_roots(self._mine(spans), outside)

            def done(table: pa.Table) -> bool:
                return wanted <= set(table.column("trace_id").to_pylist()) and whole(table)

            self._table = self.collector.settled(mine, done)
        return self._table

    def slo(self, service: str | None = None, span: str | None = None, *,
            span_regex: str | None = None, kind: str | None = None, root: bool | None = None,
            attributes: dict[str, str] | None = None) -> SloView:
        """The spans a spec `select:` with these keys would choose, as a view to assert on."""
        from slo.judge.spec import Selector

        sel = Selector(service=service, span=span, span_regex=span_regex, root=root, kind=kind,
                       attributes=tuple(sorted((str(k), str(v))
                                               for k, v in (attributes or {}).items())))
        if not sel.as_dict():
            raise TypeError("slo(): give at least service= and span= (or span_regex=)")
        if span_regex is not None:
            re.compile(span_regex)
        return SloView(self, sel)

    @property
    def traces(self) -> int:
        return len(set(self.table().column("trace_id").to_pylist()))

    def report(self) -> dict[str, Any]:
        """The detectors' findings and traces over this test's spans (no objectives)."""
        table = self.table()
        if self._report is None or self._report[0] is not table:
            from slo.judge.check import run_check
            from slo.judge.spec import Spec

            self._report = (table, run_check(Spec((), path="<slo_spans>"), table,
                                             run_id=self.run_id))
        return self._report[1]

    def findings(self, *detectors: str) -> list[dict[str, Any]]:
        """Findings (N+1 queries, N+1 calls, serial fan-out, ...) in this test's traces."""
        return [f for f in self.report()["findings"]
                if not detectors or f["detector"] in detectors]

    def assert_no_findings(self, *detectors: str) -> None:
        """AssertionError naming each finding (of these detectors; default all) with the
        waterfall of its exemplar trace."""
        __tracebackhide__ = True  # the test's line, not this one, is where it failed
        from slo.report import text as waterfall_text

        found = self.findings(*detectors)
        if not found:
            return
        lines = [f"{len(found)} finding(s) in this test's {self.traces} trace(s):"]
        for f in found:
            lines.append(f"{f['detector']}: {f['message']}")
            trace = self.report()["traces"].get(f.get("trace_id") or "")
            if trace:
                lines += ["", waterfall_text.render(trace, f.get("first_span_id")), ""]
        raise AssertionError("\n".join(lines))


@pytest.fixture
def slo_spans(request: pytest.FixtureRequest, slo_collector: SessionCollector
              ) -> Iterator[SpanRecorder]:
    """Records the spans this test's requests cause; send `slo_spans.headers()` with each."""
    rec = SpanRecorder(slo_collector, request.node.nodeid)
    request.node.stash[_RECORDER] = rec
    yield rec


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    rec = item.stash.get(_RECORDER, None)
    if rec is not None and rec.failures and call.when == "call":
        report = outcome.get_result()
        report.sections.append(("slo: failed trace assertions", "\n\n".join(rec.failures)))


# ------------------------------------------------------------------------------------ views


class SloView:
    """One selector over one test's spans; each objective is a `Measure` to compare."""

    def __init__(self, recorder: SpanRecorder, select: Any) -> None:
        self.recorder = recorder
        self.select = select
        self._report: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return " ".join(str(v) for v in self.select.as_dict().values())

    def check(self, budgets: dict[str, float]) -> dict[str, Any]:
        """`slo.judge.check.run_check` of these objectives over the test's spans."""
        from slo.judge.check import run_check
        from slo.judge.spec import SLO, Objective, Regression, Spec

        objectives = tuple(Objective(o, b) for o, b in budgets.items())
        spec = Spec((SLO(self.label, self.select, objectives, Regression()),),
                    path="<slo_spans>")
        return run_check(spec, self.recorder.table(), run_id=self.recorder.run_id)

    def report(self) -> dict[str, Any]:
        """Every objective's observed value (budgets unlimited: the values, not verdicts)."""
        if self._report is None:
            from slo.judge.spec import OBJECTIVES

            self._report = self.check(dict.fromkeys(OBJECTIVES, math.inf))
        return self._report

    def result(self, objective: str) -> dict[str, Any]:
        return next(r for r in self.report()["results"] if r["objective"] == objective)

    def measure(self, objective: str) -> Measure:
        r = self.result(objective)
        value = math.nan if r["observed"] is None else float(r["observed"])
        return Measure(value, objective, self)

    def __getattr__(self, name: str) -> Measure:
        if name in _LATENCIES or name in _COUNTS or name == "error_rate":
            return self.measure(name)
        raise AttributeError(name)

    @property
    def samples(self) -> int:
        return int(self.result("error_rate")["samples"])

    def expect(self, **budgets: float | str) -> None:
        """Assert objectives with spec budgets (`latency_p95="200ms"`, `error_rate="1%"`,
        `db_queries=3`); raises AssertionError with the full story on the first miss."""
        __tracebackhide__ = True
        for name, budget in budgets.items():
            m = getattr(self, name)
            if not m <= budget:
                raise AssertionError("\n".join(m.explain("<=", budget, full=True)))

    # -- the story of a failure ------------------------------------------------------------

    def worst_trace(self, objective: str) -> dict[str, Any] | None:
        tid = self.result(objective).get("trace_id")
        return (self.report().get("traces") or {}).get(tid) if tid else None

    def statements(self, objective: str) -> list[tuple[int, str, str]]:
        """(runs, service, normalized statement) under the exemplar span, most runs first."""
        from slo.ingest.spans import statement as db_statement
        from slo.judge.sqlnorm import shown
        from slo.judge.traces import subtree

        trace, r = self.worst_trace(objective), self.result(objective)
        if not trace:
            return []
        spans = subtree(trace["spans"], r.get("span_id") or "") or trace["spans"]
        stmts = [(str(s.get("service") or ""), db_statement(s.get("attributes") or {}))
                 for s in spans]
        texts = shown(stmt for _, stmt in stmts if stmt)  # keyword case does not split one
        counts: Counter[tuple[str, str]] = Counter(
            (svc, texts[stmt]) for svc, stmt in stmts if stmt)
        return [(n, svc, stmt) for (svc, stmt), n in
                sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    def findings(self) -> list[dict[str, Any]]:
        """The detectors' findings over the test's spans (N+1, serial fan-out, ...)."""
        return list(self.report().get("findings") or [])


def _fmt(value: float, objective: str) -> str:
    from slo.judge.spec import UNITS

    if math.isnan(value):
        return "no data"
    return units.value(value, UNITS[objective])


def _coerce(objective: str, other: Any) -> Any:
    """Budgets as the spec writes them: "200ms", "1%"; numbers pass through."""
    if not isinstance(other, str):
        return other
    from slo.judge.spec import UNITS, parse_duration_ms, parse_percent

    unit = UNITS[objective]
    value = parse_duration_ms(other) if unit == "ms" else (
        parse_percent(other) if unit == "ratio" else None)
    if value is None:
        raise TypeError(f"{objective}: cannot compare with {other!r} (expected "
                        f"{'a duration like 200ms' if unit == 'ms' else 'a percentage like 1%' if unit == 'ratio' else 'a number'})")
    return value


class Measure(float):
    """An objective's observed value: a float in the spec's unit (ms, ratio, count) that
    compares with numbers or spec strings ("200ms", "1%"), and explains a failed assertion."""

    objective: str
    view: SloView

    def __new__(cls, value: float, objective: str, view: SloView) -> Measure:
        m = super().__new__(cls, value)
        m.objective, m.view = objective, view
        return m

    def __repr__(self) -> str:
        return f"{self.objective}({_fmt(float(self), self.objective)})"

    def __lt__(self, other: Any) -> bool:
        return float(self) < _coerce(self.objective, other)

    def __le__(self, other: Any) -> bool:
        return float(self) <= _coerce(self.objective, other)

    def __gt__(self, other: Any) -> bool:
        return float(self) > _coerce(self.objective, other)

    def __ge__(self, other: Any) -> bool:
        return float(self) >= _coerce(self.objective, other)

    def __eq__(self, other: Any) -> bool:
        return float(self) == _coerce(self.objective, other)

    def __ne__(self, other: Any) -> bool:
        return float(self) != _coerce(self.objective, other)

    __hash__ = float.__hash__

    def explain(self, op: str, other: Any, full: bool = False) -> list[str]:
        """Lines that say what failed: the value, the worst request, its statements, the
        detectors' findings in it; with `full`, the check's explanation and the waterfall."""
        from slo.judge import sqlnorm
        from slo.report import text as waterfall_text

        view, obj = self.view, self.objective
        r = view.result(obj)
        lines = [f"{view.label}: {obj} = {_fmt(float(self), obj)}, expected {op} {other} "
                 f"({r['samples']} spans over {view.recorder.traces} traces)"]
        if r["status"] == "no_data":
            return lines + [r["explanation"]]
        whole = view.report().get("completeness") or {}
        if whole.get("incomplete") or whole.get("sampled"):
            from slo.judge.completeness import sentence

            lines.append("traces: " + sentence(whole))
        trace = view.worst_trace(obj)
        if trace:
            lines.append(f"worst request: trace {trace['trace_id']} "
                         f"({trace['duration_ms']:.1f} ms)")
        for n, svc, stmt in view.statements(obj)[:3]:
            lines.append(f"  {n:>3}x {svc} {sqlnorm.short(stmt, 90)}")
        for f in view.findings()[:2]:
            lines.append(f"{f['detector']}: {f['message']}")
        if full:
            if op in ("<=", "<") and isinstance(_coerce(obj, other), int | float):
                # the check's own sentence, against this budget (error sources, statements)
                checked = view.check({obj: float(_coerce(obj, other))})["results"][0]
                lines.append(checked["explanation"])
            if trace:
                lines += ["", waterfall_text.render(trace, trace.get("culprit_span_id"))]
        return lines


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any, right: Any
                              ) -> list[str] | None:
    flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
    if isinstance(left, Measure):
        m, other, op = left, right, op
    elif isinstance(right, Measure) and op in flip:
        m, other, op = right, left, flip[op]
    else:
        return None
    m.view.recorder.failures.append("\n".join(m.explain(op, other, full=True)))
    return m.explain(op, other)


# ------------------------------------------------------------------------- --slo-spec item


class SpecFailed(Exception):
    """The session's spans failed the spec (the item's failure text is the table)."""


class SpecItem(pytest.Item):
    """`--slo-spec`: the whole spec over the session's spans, one test result."""

    def runtest(self) -> None:
        from slo.judge.check import run_check

        state: SloSession = self.config.stash[_STATE]
        assert state.spec is not None
        spans = state.collector().settled(lambda t: t)
        from slo.judge.completeness import sentence

        report = run_check(state.spec, spans, run_id="pytest-session")
        self.report = report
        rows = [f"traces: {sentence(report.get('completeness'))}"]
        for r in report["results"]:
            status = r["status"]
            self.user_properties.append(
                (f"{r['slo']}/{r['objective']}",
                 f"{status} {units.value(r['observed'], r['unit'])} "
                 f"(budget {units.value(r['budget'], r['unit'])})"))
            rows.append(f"{status.upper():8} {r['slo']} {r['objective']}: "
                        f"{units.value(r['observed'], r['unit'])} (budget "
                        f"{units.value(r['budget'], r['unit'])}) {r['explanation']}")
        for f in report["findings"]:
            if f.get("fails"):
                rows.append(f"FINDING  {f['detector']}: {f['message']}")
        if report["verdict"] != "pass":
            raise SpecFailed("\n".join([f"{state.spec.path}: {spans.num_rows} spans of this "
                                        "session fail the spec:", *rows]))

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: str | None = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, SpecFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        state: SloSession = self.config.stash[_STATE]
        return (state.spec.path if state.spec else "", None, self.name)
