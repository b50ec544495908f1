"""`slo gate`: the whole CI job in one command, trustworthy on a noisy shared machine.

It starts a fresh span store and the collector, brings up a target with a baseline and a
candidate side (`slo.gate.sut`, `.commands`, `.urls`), drives them with ONE Locust process
(a subprocess: Locust monkey-patches with gevent, so it never enters this process), and
checks the candidate against the baseline.

Why slices: on a shared 2-core box the machine's speed drifts by tens of percent within a
minute. A baseline phase followed by a candidate phase would compare two different machines.
So the gate interleaves short baseline and candidate slices in ABBA order (B C C B B C ...),
and at every boundary writes the slice's run id (and, for two deployments, the side's base
URL) into a file Locust's users poll; the target switches sides in the gap before each
slice (the SUT flips its bugs; two deployments just both keep running). Each slice has its own
run id; the slices of a side are merged before the check, so both sides saw the same noise
and the regression test compares like with like. Between slices requests carry no run id for
a short gap, so no request straddles a switch.

Every process it starts runs in its own process group and is stopped on success, failure,
Ctrl-C and SIGTERM; a process that dies mid-gate ends it with exit 2 and its last lines.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import slo
from slo.errors import SloError
from slo.gate.base import SIDES, Target
from slo.gate.procs import (
    GateError,
    install_signal_handlers,
    port_open,
    python_cmd,
    restore_signal_handlers,
)
from slo.pipeline import summary_text, wait_for_spans
from slo.ports import free_port
from slo.slicefile import write_slice
from slo.supervisor import Proc, Supervisor

#: the Locust file that only loads the SLO plugin, given beside the user's (`-f theirs,this`)
PLUGIN_LOCUSTFILE = Path(slo.__file__).parent / "locust" / "slo_plugin.py"


@dataclass
class GateConfig:
    bugs: list[str] = field(default_factory=list)
    duration: float = 12.0  # seconds of load per side (baseline, candidate)
    users: int = 8
    baseline_file: str | None = None
    keep: bool = False
    report_dir: str = "reports"
    spec: str | None = None
    db: str | None = None
    cache: str | None = None
    slice_seconds: float = 0.5
    warmup: float = 3.0
    gap: float = 0.2  # no-run-id gap where the side changes (switch + drain in-flight)
    workdir: str | None = None
    sut_workers: int | None = None
    locust_processes: int = 1  # > 1: Locust's --processes; each process re-reads the slice file
    locustfile: str | None = None  # default: the target's own (the SUT's journeys)
    baseline_cmd: str | None = None
    candidate_cmd: str | None = None
    baseline_url: str | None = None
    candidate_url: str | None = None
    health: str = "/"
    start_timeout: float = 60.0  # seconds for a side to answer its health check
    otlp_port: int | None = None  # default: free port; 4318 in the URL mode
    otlp_host: str = "127.0.0.1"


def make_target(c: GateConfig) -> Target:
    """The target the flags describe; a contradictory combination is a GateError (exit 2)."""
    cmds = (c.baseline_cmd, c.candidate_cmd)
    urls = (c.baseline_url, c.candidate_url)
    if any(cmds) and any(urls):
        raise GateError("give either --baseline-cmd/--candidate-cmd or "
                        "--baseline-url/--candidate-url, not both")
    for pair, names in ((cmds, "--baseline-cmd and --candidate-cmd"),
                        (urls, "--baseline-url and --candidate-url")):
        if any(pair) and not all(pair):
            raise GateError(f"{names} go together: give both sides")
    if any(cmds) or any(urls):
        sut_only = [n for n, v in (("--bugs", c.bugs), ("--db", c.db), ("--cache", c.cache)) if v]
        if sut_only:
            raise GateError(f"{', '.join(sut_only)} only apply to the bundled SUT "
                            "(no --baseline-cmd/--baseline-url)")
    if all(cmds):
        from slo.gate.commands import CommandsTarget

        return CommandsTarget(c.baseline_cmd or "", c.candidate_cmd or "", c.health,
                              c.start_timeout)
    if all(urls):
        from slo.gate.urls import UrlsTarget

        return UrlsTarget(c.baseline_url or "", c.candidate_url or "", c.health, c.start_timeout)
    from slo.gate.sut import SutTarget

    return SutTarget(c.bugs, c.db, c.cache, c.sut_workers)


def plan_slices(duration: float, slice_seconds: float, with_baseline: bool) -> list[str]:
    """The sides of the slices in order: ABBA interleaving (B C C B B C ...) of equal counts."""
    n = max(1, math.ceil(duration / slice_seconds - 1e-9))
    if not with_baseline:
        return ["candidate"] * n
    order: list[str] = []
    for i in range(n):
        order += ["baseline", "candidate"] if i % 2 == 0 else ["candidate", "baseline"]
    return order


class Gate:
    """One gate run. `run()` returns the exit code (0 pass, 1 fail); GateError means 2."""

    def __init__(self, config: GateConfig, out: Callable[[str], None] = print,
                 target: Target | None = None) -> None:
        self.c = config
        self.out = out
        self.target = target or make_target(config)
        self.gate_id = f"gate-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self.t0 = time.monotonic()
        self.workdir = Path(config.workdir or tempfile.mkdtemp(prefix="slo-gate-"))
        self.supervisor = Supervisor(self.workdir, error=GateError)
        self.run_id_file = self.workdir / "run-id"
        self.store_path = self.workdir / "store"
        self.collector_port = 0
        #: wall seconds per phase, in order (report["gate"]["phases"]): where the time went
        self.phases: dict[str, float] = {}
        self._phase_mark = self.t0
        self._traffic_since: float | None = None  # when the wait for traffic began

    def phase(self, name: str) -> None:
        """Close the phase `name`: the time since the previous phase ended is its wall time."""
        now = time.monotonic()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - self._phase_mark, 3)
        self._phase_mark = now

    # -- for tests and tools that start the SUT stack the way the gate does ------------
    @property
    def token(self) -> str:
        return getattr(self.target, "token", "")

    @property
    def base_port(self) -> int:
        return getattr(self.target, "base_port", 0)

    @property
    def procs(self) -> list[Proc]:
        """Every child started so far (the targets wait on them)."""
        return self.supervisor.procs

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.collector_port}"

    # -- small helpers ----------------------------------------------------------------
    def say(self, msg: str) -> None:
        self.out(f"[gate {time.monotonic() - self.t0:5.1f}s] {msg}")

    def set_slice(self, run_id: str, side: str | None = None) -> None:
        host = self.target.host(side) if side and self.target.separate_hosts else ""
        write_slice(self.run_id_file, run_id, host)

    def spawn(self, name: str, cmd: list[str] | str, env: dict[str, str], *,
              cwd: str | os.PathLike[str] | None = None, shell: bool = False) -> Proc:
        """Start a child in its own process group, output to <workdir>/<name>.log."""
        # ours run in the workdir: a sut/ or slo/ folder in the caller's would shadow
        return self.supervisor.spawn(name, cmd, env, cwd=cwd or self.workdir, shell=shell)

    def wait_until(self, what: str, ok: Callable[[], bool], procs: list[Proc], timeout: float,
                   poll: float = 0.05) -> None:
        self.supervisor.wait_until(what, ok, procs, timeout, interval=poll)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("OTEL_SDK_DISABLED", None)
        return env

    # -- phases -------------------------------------------------------------------------
    def start_collector(self, wait: bool = True) -> None:
        """Spawn the collector; `wait=False` leaves `wait_collector()` for later, so the
        target's start (database copy, SUT boot) overlaps the collector's."""
        self.store_path.mkdir(parents=True, exist_ok=True)
        if self.c.otlp_port:
            self.collector_port = self.c.otlp_port
            if port_open(self.collector_port):
                raise GateError(f"--otlp-port {self.collector_port} is taken (another "
                                "collector?); stop it or pick a free port")
        else:
            self.collector_port = free_port()
        grpc_port = free_port()
        self.say(f"starting collector on :{self.collector_port} (store {self.store_path})")
        self._collector = self.spawn(
            "collector",
            python_cmd("slo.cli:main") + [
                "collect", "--store", str(self.store_path), "--port", str(self.collector_port),
                "--host", self.c.otlp_host, "--grpc-port", str(grpc_port),
            ],
            self.env(),
        )
        if wait:
            self.wait_collector()

    def wait_collector(self) -> None:
        self.wait_until("collector", lambda: port_open(self.collector_port), [self._collector],
                        30, poll=0.02)

    def start_stack(self) -> None:
        """The collector, then the target's two sides, ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_collector()
        self.target.start(self)
        self.target.ready(self)

    def locustfile(self) -> str:
        given = self.c.locustfile or self.target.default_locustfile()
        if not given:
            raise GateError("no Locust file: pass --locustfile FILE (or gate: locustfile: in "
                            "the spec); only the bundled SUT has a default")
        path = Path(given).resolve()
        if not path.is_file():
            raise GateError(f"Locust file {given} does not exist")
        return str(path)

    def start_locust(self) -> Proc:
        self.set_slice(f"{self.gate_id}-warmup", "baseline")
        cmd = [
            sys.executable, "-P", "-m", "locust", "-f", f"{self.locustfile()},{PLUGIN_LOCUSTFILE}",
            "--headless", "-u", str(self.c.users), "-r", str(max(1, self.c.users)),
            "--host", self.target.host("baseline"),
            "--slo-no-check", "--slo-run-id-file", str(self.run_id_file),
            "--slo-store", str(self.store_path), "--only-summary",
            "--slo-otlp-endpoint", self.collector_url,
            "--loglevel", "WARNING",
        ]
        if self.c.locust_processes > 1:
            # the forked workers dial --master-port while the parent binds --master-bind-port:
            # away from the default 5557 (gates may run side by side) both must be given
            port = str(free_port())
            cmd += ["--processes", str(self.c.locust_processes),
                    "--master-bind-port", port, "--master-port", port]
        env = self.env()
        env.update(self.target.locust_env())
        return self.spawn("locust", cmd, env)

    def drive(self, locust: Proc, preload: _Preload | None = None) -> dict[str, list[str]]:
        """Warm up (both sides), then run the slices; returns the run ids per side.

        `preload`, loading the check's imports meanwhile: its first step (the check's
        modules, DuckDB) is awaited before the warm-up starts, so a broken install ends the
        gate before any load is spent (the warm-up counts from the first request anyway);
        the rest (scipy) ends it before the slices if it has failed by then."""
        sides = plan_slices(self.c.duration, self.c.slice_seconds, self.c.baseline_file is None)
        slice_s = self.c.duration / max(1, sides.count("candidate"))
        # A gap only where the side changes: between two slices of one side a request that
        # straddles the boundary was sent to, and served by, that side either way.
        gaps = [i == 0 or sides[i - 1] != side for i, side in enumerate(sides)]
        began = self._wait_for_traffic()
        if preload is not None:
            preload.wait(0)
        self.phase("traffic")
        # the warm-up counts from when the load began to flow to the ready target: the time it
        # took to see its spans arrive was warm-up already run (0 when unknown)
        ran = max(0.0, time.monotonic() - began) if began is not None else 0.0
        half = self.c.warmup / 2
        first = max(0.0, half - ran)  # the baseline's half
        # the candidate's half: all of it on its own deployment, else the rest of the warm-up
        second = half if self.target.separate_hosts else max(0.0, half - max(0.0, ran - half))
        left = first + second + slice_s * len(sides) + self.c.gap * sum(gaps)
        procs = f" in {self.c.locust_processes} Locust processes" if self.c.locust_processes > 1 else ""
        self.say(f"warm-up {self.c.warmup:.0f} s with {self.c.users} users{procs} "
                 f"({left:.0f} s of load left)")
        self.sleep(first)
        self.set_slice(f"{self.gate_id}-warmup", "candidate")  # two deployments: warm both
        if not self.target.separate_hosts and began is not None:
            # earlier spans than those first seen have arrived meanwhile (they wait for their
            # exporter's batch delay): the rest of the warm-up from the earliest
            began = min(began, self._load_began() or began)
            second = max(0.0, self.c.warmup - (time.monotonic() - began))
        self.sleep(second)
        if preload is not None:
            preload.raise_error()
        self.phase("warmup")
        ids: dict[str, list[str]] = {"baseline": [], "candidate": []}
        for i, side in enumerate(sides):
            if gaps[i]:
                self.set_slice("")  # gap: requests in flight at the switch carry no run id
                self.target.switch(side)
                self.sleep(self.c.gap)
            run_id = f"{self.gate_id}-{side[0]}{i:02d}"
            ids[side].append(run_id)
            self.set_slice(run_id, side)
            left = slice_s * (len(sides) - i) + self.c.gap * sum(gaps[i + 1:])
            n_side = sides[: i + 1].count(side)
            what = ", ".join(f"{k}: {(','.join(v) or 'none') if isinstance(v, list) else v}"
                             for k, v in self.target.describe(side).items()
                             if k in ("bugs", "url"))
            self.say(
                f"{side} phase, slice {n_side}/{sides.count(side)}"
                + (f" ({what})" if what else "") + f", {left:.0f} s of load left"
            )
            self.sleep(slice_s)
        self.set_slice("")
        self.phase("load")
        return ids

    def _wait_for_traffic(self, timeout: float = 90) -> float | None:
        """Slices start only once spans flow end to end (Locust -> target -> collector -> store).

        On a loaded machine Locust alone can take seconds to start; a slice timed from its
        launch would otherwise be empty. Returns when (monotonic clock) the load began to
        flow to the ready target: the first warm-up span's start, but not before this wait
        began (the target was ready; earlier spans are Locust's refused requests); None when
        the spans' clock is not ours (`Target.local`).
        """
        self._traffic_since = time.monotonic()
        first_ns: list[int] = []

        def flowing() -> bool:
            first_ns[:] = self._warmup_starts()
            return bool(first_ns)

        self.wait_until("traffic (locust -> target -> collector)", flowing, list(self.procs),
                        timeout)
        return self._load_began(first_ns[0])

    def _warmup_starts(self) -> list[int]:
        """The start (ns) of the earliest warm-up span in the store, if any has arrived."""
        from slo.ingest.store import SpanStore

        warmup_id = f"{self.gate_id}-warmup"
        try:
            return [r.start_ns for r in SpanStore(self.store_path).runs()
                    if r.run_id == warmup_id and r.spans > 0]
        except SloError:
            return []

    def _load_began(self, first_ns: int | None = None) -> float | None:
        """When (monotonic clock) the load began to flow to the ready target, by the earliest
        warm-up span seen (`first_ns`, else read now); see `_wait_for_traffic`."""
        if not self.target.local:
            return None
        if first_ns is None:
            starts = self._warmup_starts()
            if not starts:
                return None
            first_ns = starts[0]
        now = time.monotonic()
        since = now if self._traffic_since is None else self._traffic_since
        return min(now, max(since, now - (time.time_ns() - first_ns) / 1e9))

    def sleep(self, seconds: float) -> None:
        """Sleep, but end the gate (exit 2) as soon as any of our processes dies."""
        self.supervisor.sleep(seconds, message="{name} exited during the gate (code {code})")

    def spec_path(self) -> str:
        """--spec, else ./slo.yaml, else the target's default (the SUT's embedded spec)."""
        if self.c.spec:
            return self.c.spec
        if Path("slo.yaml").is_file():
            return "slo.yaml"
        default = self.target.default_spec()
        if default is None:
            raise GateError("no SLO spec: pass --spec FILE or put slo.yaml in this directory")
        return default

    def await_last_spans(self, store: Any, run_ids: list[str], timeout: float = 20) -> None:
        """Return once the load's spans are in the store.

        Done when Locust (SIGTERMed after the load) has exited, its client spans flushed on
        the way out, and then either the target has stopped, having flushed its own (a target
        that does: `flushes_on_stop`), or no span has arrived for a few of the exporters'
        batch delays (`span_settle`)."""
        locusts = [p for p in self.procs if p.name == "locust"]
        stopping = ([p for p in self.procs if p is not self._collector and p not in locusts]
                    if self.target.flushes_on_stop and not self.c.keep else [])

        def stopped() -> bool:
            if any(p.alive() for p in locusts):
                return False
            # only now: requests Locust had in flight still get their answers and spans, and
            # no service of the target is gone while another still calls it
            for p in stopping:
                p.terminate()
            return not any(p.alive() for p in stopping)

        wait_for_spans(store, run_ids, settle=0.0 if stopping else self.target.span_settle,
                       timeout=timeout, poll=0.05, until=stopped)

    def check(self, ids: dict[str, list[str]], load_seconds: dict[str, float]) -> int:
        from slo.ingest.store import SpanStore
        from slo.judge.baseline import build_baseline, load_baseline, save_baseline
        from slo.judge.check import CHECK_COLUMNS
        from slo.judge.spec import load_spec
        from slo.pipeline import judge
        from slo.report.writers import write_reports

        spec = load_spec(self.spec_path())
        store = SpanStore(self.store_path)
        all_ids = ids["baseline"] + ids["candidate"]
        self.say("waiting for the last spans")
        self.await_last_spans(store, all_ids)
        self.phase("spans")
        if not self.c.keep:  # every span is in: the target winds down while the check runs
            for p in self.procs:
                if p is not self._collector:
                    p.terminate()
        known = {r.run_id for r in store.runs()}
        for side in SIDES:
            missing = [i for i in ids[side] if i not in known]
            ids[side] = [i for i in ids[side] if i in known]
            if missing:
                self.say(f"{len(missing)} {side} slice(s) without spans: {', '.join(missing)}")
            if not ids[side] and (side == "candidate" or not self.c.baseline_file):
                raise GateError(f"no spans arrived for the {side} phase; see the logs with --keep")
        merged_b = f"{self.gate_id}-baseline"
        merged_c = f"{self.gate_id}-candidate"
        # store.read joins the spans of services that copy no run id to their trace's slice
        raw_c = store.read(ids["candidate"], columns=CHECK_COLUMNS)  # its run_id column: the slice of each span
        cand = _relabel(raw_c, merged_c)
        cmeta = _merged_meta(merged_c, cand, self.c.users, load_seconds["candidate"],
                             self.target.describe("candidate").get("bugs", []))
        store.write_run_meta(merged_c, cmeta)
        if self.c.baseline_file:
            baseline = load_baseline(self.c.baseline_file)
        else:
            raw_b = store.read(ids["baseline"], columns=CHECK_COLUMNS)
            base = _relabel(raw_b, merged_b)
            bmeta = _merged_meta(merged_b, base, self.c.users, load_seconds["baseline"],
                                 self.target.describe("baseline").get("bugs", []))
            store.write_run_meta(merged_b, bmeta)
            baseline = build_baseline(spec, base, run_meta=bmeta, slices=raw_b["run_id"])
        self.phase("read")
        if not self.c.keep:  # the check reads no store: the collector stops while it runs
            if self.c.workdir is None:
                # the store is deleted at the end: its compaction at a clean stop (WAL to
                # Parquet, CPU the check needs on a small box) would be thrown away; whatever
                # the collector answered for is in the WAL, which a kill -9 keeps
                self._collector.signal_group(signal.SIGKILL)
            else:
                self._collector.terminate()  # a kept store: compacted, then it exits
        self.say("checking candidate against baseline")
        gate_info = {
            "gate_id": self.gate_id, "target": self.target.kind,
            "sides": {s: self.target.describe(s) for s in SIDES},
            "bugs": list(self.c.bugs), "users": self.c.users,
            "locust_processes": self.c.locust_processes,
            "duration_s": self.c.duration, "slices": ids,
            "wall_s": round(time.monotonic() - self.t0, 1),
            # the same dict, filled as the gate goes: the written report has every phase up to
            # the check; the reports' own time is in the "phases:" line printed at the end
            "phases": self.phases,
        }
        outcome = judge(spec, cand, baseline=baseline, run_meta=cmeta,
                        report_dir=None, extra={"gate": gate_info},
                        slices=raw_c["run_id"])
        self.phase("check")
        write_reports(outcome.report, self.c.report_dir)
        if not self.c.baseline_file:
            save_baseline(baseline, Path(self.c.report_dir) / "baseline.json")
        self.out(summary_text(outcome.report, self.c.report_dir))
        self.phase("reports")
        return outcome.code

    def run(self) -> int:
        previous = install_signal_handlers()
        try:
            self.spec_path()  # no spec is exit 2 before anything starts
            self.locustfile()  # nor a missing Locust file
            writable_dir(self.c.report_dir, "--report-dir")  # nor reports that cannot be written
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.phase("setup")
            # everything starts at once: the collector, the target (the SUT's database copy
            # and boot) and Locust boot together. Until the target answers, Locust's requests
            # fail fast and belong to no slice; until the collector listens, its exporter
            # retries; the slices wait for spans to flow end to end (`drive`)
            self.start_collector(wait=False)
            self.target.start(self)
            locust = self.start_locust()
            self.wait_collector()
            self.phase("start")
            self.target.ready(self)
            self.phase("ready")
            # the check's imports (1-2 s of CPU) load while the gate waits for traffic and
            # the warm-up runs, not while the collector, the target and Locust boot on the
            # same cores: there they delayed the target's readiness (most on a busy box)
            preload = _Preload(_import_check,
                               lambda: _import_engines(request_level=bool(self.c.baseline_file)))
            t_start = time.monotonic()
            ids = self.drive(locust, preload)
            preload.join()
            per_side = {
                "candidate": self.c.duration,
                "baseline": self.c.duration if ids["baseline"] else 0.0,
            }
            self.say(f"load done in {time.monotonic() - t_start:.0f} s; stopping locust")
            # no request carries a slice id any more: Locust can stop while we check
            locust.terminate()
            try:
                code = self.check(ids, per_side)
            except SloError:
                raise
            except Exception as e:  # a bug in the check must not look like a failed build
                raise GateError(f"the check crashed: {type(e).__name__}: {e}") from e
            self.say("phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items()))
            self.say(f"done in {time.monotonic() - self.t0:.0f} s, exit {code}")
            return code
        finally:
            self.shutdown()
            restore_signal_handlers(previous)

    def shutdown(self) -> None:
        """Stop what we started: SIGTERM every group at once, then SIGKILL what lingers.

        A second Ctrl-C while this runs is ignored: half a clean-up would leave processes.
        """
        keep = self.c.keep
        self.supervisor.stop([p for p in self.procs if not (keep and p.name != "locust")],
                             timeout=10)
        with contextlib.suppress(SloError):
            self.target.stop()
        if keep:
            alive = [p for p in self.procs if p.alive()]
            for p in alive:
                self.out(f"kept {p.name} (pid {p.popen.pid}; stop with: kill -- -{p.popen.pid})")
            sides = ", ".join(f"{s} {self.target.host(s)}" for s in SIDES)
            self.out(f"kept: {sides}" + (f" (token {self.token})" if self.token else "")
                     + f", collector {self.collector_url}, store {self.store_path}")
        elif self.c.workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _relabel(table: Any, run_id: str) -> Any:
    """Slices of one side merged into one run: same spans, one run id."""
    import pyarrow as pa

    idx = table.schema.get_field_index("run_id")
    return table.set_column(idx, "run_id", pa.array([run_id] * table.num_rows, pa.string()))


def _merged_meta(run_id: str, spans: Any, users: int, seconds: float, bugs: list[str]) -> dict[str, Any]:
    import pyarrow.compute as pc

    roots = int(pc.sum(pc.equal(spans["parent_span_id"], "")).as_py() or 0) if spans.num_rows else 0
    errors = (
        int(pc.sum(pc.and_(pc.equal(spans["parent_span_id"], ""),
                           pc.equal(spans["status_code"], 2))).as_py() or 0)
        if spans.num_rows else 0
    )
    start = int(pc.min(spans["start_ns"]).as_py()) if spans.num_rows else 0
    end = int(pc.max(spans["end_ns"]).as_py()) if spans.num_rows else 0
    load = {"users": users, "requests": roots, "failures": errors,
            "rps": round(roots / seconds, 2) if seconds else 0.0}
    return {"version": 1, "run_id": run_id, "source": "slo gate", "start_ns": start,
            "end_ns": end, "bugs": bugs, **load, "load": load}


def _import_check() -> None:
    # first: the wait for traffic needs the store's module, and a broken install (DuckDB,
    # pyarrow) shows here, before the warm-up
    import slo.ingest.store
    import slo.judge.baseline
    import slo.judge.check
    import slo.judge.spec
    import slo.report.writers  # noqa: F401


def _import_engines(request_level: bool) -> None:
    # imported lazily where they are used, and slow: a slice-pair check needs Student's t
    # from scipy.special (0.3 s of CPU), request-level tests (a saved baseline) scipy.stats
    # (1 s)
    import importlib

    import duckdb  # noqa: F401

    importlib.import_module("scipy.stats" if request_level else "scipy.special")


class _Preload(threading.Thread):
    """Imports in a thread, step after step, while the gate waits (for traffic, during the
    warm-up and the load); `wait(step)` returns once that step is done, `join()` once all
    are, and both re-raise what an import raised (a broken install is the gate's error)."""

    def __init__(self, *steps: Callable[[], None]) -> None:
        super().__init__(name="slo-gate-preload", daemon=True)
        self.error: BaseException | None = None
        self.steps = steps or (_import_check,)
        self._done = [threading.Event() for _ in self.steps]
        self.start()

    def run(self) -> None:
        try:
            for step, done in zip(self.steps, self._done, strict=True):
                step()
                done.set()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread by join()
            self.error = e
        finally:
            for done in self._done:
                done.set()

    def wait(self, step: int = 0) -> None:
        self._done[step].wait()
        self.raise_error()

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        self.raise_error()

    def raise_error(self) -> None:
        """Re-raise what an import raised, if one has (without waiting for the rest)."""
        if self.error is not None:
            raise self.error


def writable_dir(path: str, what: str) -> None:
    """Create `path` (a directory) now and prove it writable, or a GateError naming `what`."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise GateError(f"{what} {path} is not a writable directory ({e.strerror or e}); "
                        "pick another one") from e


def run_gate(config: GateConfig, out: Callable[[str], None] = print) -> int:
    """Run the gate; 0 pass, 1 fail. Raises GateError (and other SloError) for exit 2."""
    return Gate(config, out).run()
