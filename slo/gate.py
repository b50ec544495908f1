"""`slo gate`: the whole CI job in one command, trustworthy on a noisy shared machine.

It starts a fresh span store, the collector and the SUT on free ports, drives them with Locust
(a subprocess: Locust monkey-patches with gevent, so it never enters this process), and checks
the candidate against a baseline.

Why slices: on a shared 2-core box the machine's speed drifts by tens of percent within a
minute. A baseline phase followed by a candidate phase would compare two different machines.
So the gate runs ONE Locust for the whole job and interleaves short baseline and candidate
slices in ABBA order (B C C B B C ...), switching the SUT's bugs at run time (POST
/admin/bugs) and the run id in the baggage (a file Locust's users poll) at every boundary.
Each slice has its own run id; the slices of a side are merged before the check, so both sides
saw the same noise and the regression test compares like with like. Between slices requests
carry no run id for a short gap, so no request straddles a bug switch.

Every process it starts runs in its own process group and is stopped on success, failure,
Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from slo.errors import SloError
from slo.ports import free_port, free_port_range


class GateError(SloError):
    """The gate could not run (a process did not start, a port did not open): exit 2."""


class Interrupted(GateError):
    """SIGTERM/SIGINT arrived: stop everything and leave."""


# ---------------------------------------------------------------------------- spec & waiting


def embedded_spec_path() -> str:
    """The SLO spec shipped inside the package (slo/defaults/slo.yaml)."""
    return str(resources.files("slo") / "defaults" / "slo.yaml")


def resolve_spec_path(given: str | None) -> str:
    """The spec to use: the given path, else ./slo.yaml if present, else the embedded one."""
    if given:
        return given
    if Path("slo.yaml").is_file():
        return "slo.yaml"
    return embedded_spec_path()


def wait_for_spans(
    store: Any,
    run_ids: Sequence[str],
    *,
    expected_roots: int | None = None,
    settle: float = 1.0,
    timeout: float = 30.0,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Wait until the collector has written the runs' spans; returns the span count seen.

    Services export in batches (OTEL_BSP_SCHEDULE_DELAY), so spans arrive after the requests.
    Done when the count has not grown for `settle` seconds (and, if given, at least
    `expected_roots` spans arrived: a cheap lower bound, one root span per request), or at
    `timeout`, whichever comes first.
    """
    wanted = set(run_ids)
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while True:
        try:
            count = sum(r.spans for r in store.runs() if r.run_id in wanted)
        except SloError:
            count = 0
        now = time.monotonic()
        if count != last:
            last, stable_since = count, now
        enough = expected_roots is None or count >= expected_roots
        if (enough and now - stable_since >= settle) or now >= deadline:
            return count
        if not enough and count > 0 and now - stable_since >= max(settle, 5.0):
            return count  # fewer spans than requests (e.g. connection errors): settled anyway
        sleep(poll)


def summary_text(report: dict[str, Any], report_dir: str | os.PathLike | None = None) -> str:
    """A few lines for a terminal or a CI log: verdict, what failed and why, where to look."""
    results = report.get("results", [])
    failed = [r for r in results if r.get("status") != "pass"]
    findings = [f for f in report.get("findings", []) if f.get("fails")]
    lines = [
        f"SLO verdict: {str(report.get('verdict', '?')).upper()}  "
        f"({len(results) - len(failed)}/{len(results)} results pass, run {report.get('run_id')}"
        + (f" vs baseline {report['baseline_run_id']}" if report.get("baseline_run_id") else "")
        + ")"
    ]
    for r in failed:
        unit = r.get("unit") or ""
        lines.append(
            f"  FAIL {r.get('slo')} {r.get('objective')} [{r.get('status')}]: "
            f"observed {_num(r.get('observed'), unit)}, budget {_num(r.get('budget'), unit)}"
            + (f", baseline {_num(r.get('baseline'), unit)}" if r.get("baseline") is not None else "")
        )
        if r.get("explanation"):
            lines.append(f"       {r['explanation']}")
        if r.get("trace_id"):
            lines.append(f"       worst trace {r['trace_id']}")
    for f in findings:
        lines.append(
            f"  FINDING {f.get('detector')} in {f.get('service')} {f.get('span')}: "
            f"{f.get('message') or f.get('statement') or ''}".rstrip()
        )
    if report_dir:
        lines.append(f"reports: {Path(report_dir) / 'slo-report.html'} (and .json, .md, junit.xml)")
    return "\n".join(lines)


def _num(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "ratio":
        return f"{float(v) * 100:.2f}%"
    if unit == "ms":
        return f"{float(v):.1f} ms"
    return f"{float(v):g}"


# ---------------------------------------------------------------------------- processes


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Proc:
    """A child in its own process group, its log file, and how to stop it."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def terminate(self) -> None:
        """SIGTERM the whole group, without waiting."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM the whole group, then SIGKILL what is left after `timeout`."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # the leader may be gone while its children (gunicorn workers) linger
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(2)


def _python_cmd(module_main: str) -> list[str]:
    """Run `<module>:main` with this interpreter (no reliance on console scripts on PATH)."""
    module, func = module_main.split(":")
    # -P: the working directory must not shadow packages (a data dir named sut/, say)
    return [sys.executable, "-P", "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]


def locustfile_path() -> str:
    spec = importlib.util.find_spec("loadtests")
    if spec is None or not spec.submodule_search_locations:
        raise GateError("the loadtests package is not installed; run `make venv`")
    return str(Path(next(iter(spec.submodule_search_locations))) / "locustfile.py")


# ---------------------------------------------------------------------------- the gate


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
    slice_seconds: float = 1.0
    warmup: float = 3.0
    gap: float = 0.2  # no-run-id gap at each slice boundary (bug switch + drain in-flight)
    workdir: str | None = None
    sut_workers: int | None = None
    locust_processes: int = 1  # > 1: Locust's --processes; each process re-reads the run id file


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

    def __init__(self, config: GateConfig, out: Callable[[str], None] = print) -> None:
        self.c = config
        self.out = out
        self.procs: list[Proc] = []
        self.gate_id = f"gate-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self.token = secrets.token_hex(16)
        self.t0 = time.monotonic()
        self.workdir = Path(config.workdir or tempfile.mkdtemp(prefix="slo-gate-"))
        self.run_id_file = self.workdir / "run-id"
        self.store_path = self.workdir / "store"
        self.base_port = 0
        self.collector_port = 0
        self.db_url = ""

    # -- small helpers ----------------------------------------------------------------
    def say(self, msg: str) -> None:
        self.out(f"[gate {time.monotonic() - self.t0:5.1f}s] {msg}")

    def set_run_id(self, run_id: str) -> None:
        tmp = self.run_id_file.with_suffix(".tmp")
        tmp.write_text(run_id)
        os.replace(tmp, self.run_id_file)

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> Proc:
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its lifetime
        try:
            popen = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
                cwd=self.workdir,  # not the caller's: a sut/ or slo/ folder there would shadow ours
            )
        finally:
            log.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def wait_until(self, what: str, ok: Callable[[], bool], procs: list[Proc], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            for p in procs:
                if not p.alive():
                    raise GateError(f"{p.name} exited while starting ({what}):\n{p.log_tail()}")
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in procs)
                raise GateError(f"{what} not ready after {timeout:.0f} s\n{tails}")
            time.sleep(0.1)

    def admin_bugs(self, bugs: list[str]) -> None:
        """Replace the SUT's bug set (the state is shared by all five services)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.base_port}/admin/bugs",
            data=json.dumps({"bugs": bugs}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise GateError(f"could not switch bugs to {bugs or 'none'} via /admin/bugs: {e}") from e
        got = sorted(body.get("bugs", []))
        if got != sorted(bugs):
            raise GateError(f"/admin/bugs answered {got}, expected {sorted(bugs)}")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("OTEL_SDK_DISABLED", None)
        return env

    # -- phases -------------------------------------------------------------------------
    def start_stack(self) -> None:
        self.store_path.mkdir(parents=True, exist_ok=True)
        self.collector_port, grpc_port = free_port(), free_port()
        self.say(f"starting collector on :{self.collector_port} (store {self.store_path})")
        collector = self.start(
            "collector",
            _python_cmd("slo.cli:main") + [
                "collect", "--store", str(self.store_path), "--port", str(self.collector_port),
                "--grpc-port", str(grpc_port), "--run-id", f"{self.gate_id}-unlabelled",
            ],
            self.env(),
        )
        self.base_port = free_port_range(5)
        env = self.env()
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{self.collector_port}",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_BSP_SCHEDULE_DELAY="200",
            SUT_ADMIN_TOKEN=self.token,
        )
        cmd = _python_cmd("sut.cli:main") + [
            "up", "--base-port", str(self.base_port), "--data-dir", str(self.workdir / "sut-data"),
        ]
        if self.c.db:
            db = self.c.db if "://" in self.c.db else str(Path(self.c.db).resolve())
        else:
            db = str(private_sqlite_db(self.workdir))
        cmd += ["--db", db]
        self.db_url = db
        if self.c.cache:
            cmd += ["--cache", self.c.cache]
        if self.c.sut_workers:
            cmd += ["--workers", str(self.c.sut_workers)]
        self.say(f"starting SUT on :{self.base_port}-{self.base_port + 4}")
        sut = self.start("sut", cmd, env)
        self.wait_until(
            "collector", lambda: port_open(self.collector_port), [collector], timeout=30
        )
        self.wait_until(
            "SUT",
            lambda: all(http_ok(f"http://127.0.0.1:{self.base_port + i}/healthz") for i in range(5)),
            [sut, collector],
            timeout=180,  # the first start seeds the shared database
        )
        self.admin_bugs([])
        self.prime_stock_cache()

    def prime_stock_cache(self) -> None:
        """Load the popular products' stock into inventory's cache before anything is measured.

        Most traffic is on ~100 popular products; left to the load alone the cache is still
        half cold during a short gate, and a request that does or does not query the database
        flips per-request query counts between two values. Primed, misses are the long tail.
        """
        try:
            from sut.seed import HOT_PRODUCTS

            hot = list(HOT_PRODUCTS)
        except ImportError:  # pragma: no cover
            hot = list(range(1, 101))
        for i in range(0, len(hot), 50):
            ids = ",".join(str(p) for p in hot[i : i + 50])
            url = f"http://127.0.0.1:{self.base_port + 3}/stock?product_ids={ids}"
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError) as e:
                raise GateError(f"could not warm inventory's cache ({url}): {e}") from e

    def start_locust(self) -> Proc:
        self.set_run_id(f"{self.gate_id}-warmup")
        cmd = [
            sys.executable, "-P", "-m", "locust", "-f", locustfile_path(), "--headless",
            "-u", str(self.c.users), "-r", str(max(1, self.c.users)),
            "--host", f"http://127.0.0.1:{self.base_port}",
            "--slo-no-check", "--slo-run-id-file", str(self.run_id_file),
            "--slo-store", str(self.store_path), "--only-summary",
            "--slo-otlp-endpoint", f"http://127.0.0.1:{self.collector_port}",
            "--loglevel", "WARNING",
        ]
        if self.c.locust_processes > 1:
            # the forked workers dial --master-port while the parent binds --master-bind-port:
            # away from the default 5557 (gates may run side by side) both must be given
            port = str(free_port())
            cmd += ["--processes", str(self.c.locust_processes),
                    "--master-bind-port", port, "--master-port", port]
        env = self.env()
        env["SUT_ADMIN_TOKEN"] = self.token
        return self.start("locust", cmd, env)

    def drive(self, locust: Proc) -> dict[str, list[str]]:
        """Warm up, then run the slices; returns the run ids per side."""
        sides = plan_slices(self.c.duration, self.c.slice_seconds, self.c.baseline_file is None)
        slice_s = self.c.duration / max(1, sides.count("candidate"))
        per_slice = slice_s + self.c.gap
        left = self.c.warmup + per_slice * len(sides)
        self._wait_for_traffic(locust)
        procs = f" in {self.c.locust_processes} Locust processes" if self.c.locust_processes > 1 else ""
        self.say(f"warm-up {self.c.warmup:.0f} s with {self.c.users} users{procs} "
                 f"({left:.0f} s of load left)")
        self._sleep(self.c.warmup, locust)
        ids: dict[str, list[str]] = {"baseline": [], "candidate": []}
        current_bugs: list[str] | None = []
        for i, side in enumerate(sides):
            bugs = list(self.c.bugs) if side == "candidate" else []
            self.set_run_id("")  # gap: requests in flight at the switch carry no run id
            if bugs != current_bugs:
                self.admin_bugs(bugs)
                self._wait_bug_effective(current_bugs or [], bugs)
                current_bugs = bugs
            self._sleep(self.c.gap, locust)
            run_id = f"{self.gate_id}-{side[0]}{i:02d}"
            ids[side].append(run_id)
            self.set_run_id(run_id)
            left = per_slice * (len(sides) - i) - self.c.gap
            n_side = sides[: i + 1].count(side)
            self.say(
                f"{side} phase, slice {n_side}/{sides.count(side)}"
                f" (bugs: {','.join(bugs) or 'none'}), {left:.0f} s of load left"
            )
            self._sleep(slice_s, locust)
        self.set_run_id("")
        return ids

    def _wait_bug_effective(self, before: list[str], after: list[str]) -> None:
        """Wait until a switch has really happened, where that takes time.

        `missing_index` drops and re-creates a real index on 400k rows (up to a second on a
        busy box): a slice started before it is done would measure the other side.
        """
        if ("missing_index" in before) == ("missing_index" in after) or not self.db_url:
            return
        from sut import db as sut_db

        want = "missing_index" not in after
        self.wait_until(
            f"inventory index {'re-created' if want else 'dropped'}",
            lambda: sut_db.inventory_index_present(self.db_url) == want,
            list(self.procs), timeout=60,
        )

    def _wait_for_traffic(self, locust: Proc, timeout: float = 90) -> None:
        """Slices start only once spans flow end to end (Locust -> SUT -> collector -> store).

        On a loaded machine Locust alone can take seconds to start; a slice timed from its
        launch would otherwise be empty.
        """
        from slo.store import SpanStore

        store = SpanStore(self.store_path)
        warmup_id = f"{self.gate_id}-warmup"

        def flowing() -> bool:
            try:
                return any(r.run_id == warmup_id and r.spans > 0 for r in store.runs())
            except SloError:
                return False

        self.wait_until("traffic (locust -> SUT -> collector)", flowing, list(self.procs),
                        timeout)

    def _sleep(self, seconds: float, locust: Proc) -> None:
        deadline = time.monotonic() + seconds
        while (now := time.monotonic()) < deadline:
            if not locust.alive():
                raise GateError(f"locust exited early:\n{locust.log_tail()}")
            time.sleep(min(0.1, deadline - now))

    def check(self, ids: dict[str, list[str]], load_seconds: dict[str, float]) -> int:
        from slo.baseline import build_baseline, load_baseline, save_baseline
        from slo.check import run_check
        from slo.report import write_reports
        from slo.spec import load_spec
        from slo.store import SpanStore

        spec = load_spec(self.c.spec or embedded_spec_path())  # the SUT's spec, not ./slo.yaml
        store = SpanStore(self.store_path)
        all_ids = ids["baseline"] + ids["candidate"]
        self.say("waiting for the last spans")
        wait_for_spans(store, all_ids, settle=1.0, timeout=20)
        known = {r.run_id for r in store.runs()}
        for side in ("baseline", "candidate"):
            missing = [i for i in ids[side] if i not in known]
            ids[side] = [i for i in ids[side] if i in known]
            if missing:
                self.say(f"{len(missing)} {side} slice(s) without spans: {', '.join(missing)}")
            if not ids[side] and (side == "candidate" or not self.c.baseline_file):
                raise GateError(f"no spans arrived for the {side} phase; see the logs with --keep")
        merged_b = f"{self.gate_id}-baseline"
        merged_c = f"{self.gate_id}-candidate"
        raw_c = store.read(ids["candidate"])  # its run_id column: the slice of each span
        cand = _relabel(raw_c, merged_c)
        cmeta = _merged_meta(merged_c, cand, self.c.users, load_seconds["candidate"], self.c.bugs)
        store.write_run_meta(merged_c, cmeta)
        if self.c.baseline_file:
            baseline = load_baseline(self.c.baseline_file)
        else:
            raw_b = store.read(ids["baseline"])
            base = _relabel(raw_b, merged_b)
            bmeta = _merged_meta(merged_b, base, self.c.users, load_seconds["baseline"], [])
            store.write_run_meta(merged_b, bmeta)
            baseline = build_baseline(spec, base, run_meta=bmeta, slices=raw_b["run_id"])
        self.say("checking candidate against baseline")
        report = run_check(spec, cand, baseline=baseline, run_meta=cmeta,
                           slices=raw_c["run_id"])
        report["gate"] = {
            "gate_id": self.gate_id, "bugs": list(self.c.bugs), "users": self.c.users,
            "locust_processes": self.c.locust_processes,
            "duration_s": self.c.duration, "slices": ids,
            "wall_s": round(time.monotonic() - self.t0, 1),
        }
        write_reports(report, self.c.report_dir)
        if not self.c.baseline_file:
            save_baseline(baseline, Path(self.c.report_dir) / "baseline.json")
        self.out(summary_text(report, self.c.report_dir))
        return 0 if report.get("verdict") == "pass" else 1

    def run(self) -> int:
        previous = _install_signal_handlers()
        try:
            _preload_check()  # imported now, not in the gap after the load (slow on a busy box)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.start_stack()
            locust = self.start_locust()
            t_start = time.monotonic()
            ids = self.drive(locust)
            per_side = {
                "candidate": self.c.duration,
                "baseline": self.c.duration if ids["baseline"] else 0.0,
            }
            self.say(f"load done in {time.monotonic() - t_start:.0f} s; stopping locust")
            # no request carries a slice id any more: Locust can stop while we check
            with contextlib.suppress(ProcessLookupError):
                os.killpg(locust.popen.pid, signal.SIGTERM)
            try:
                code = self.check(ids, per_side)
            except SloError:
                raise
            except Exception as e:  # a bug in the check must not look like a failed build
                raise GateError(f"the check crashed: {type(e).__name__}: {e}") from e
            self.say(f"done in {time.monotonic() - self.t0:.0f} s, exit {code}")
            return code
        finally:
            self.shutdown()
            _restore_signal_handlers(previous)

    def shutdown(self) -> None:
        """Stop what we started: SIGTERM every group at once, then SIGKILL what lingers.

        A second Ctrl-C while this runs is ignored: half a clean-up would leave processes.
        """
        ignored = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):
                ignored[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            keep = self.c.keep
            stopping = [p for p in self.procs if not (keep and p.name != "locust")]
            for p in stopping:
                p.terminate()
            deadline = time.monotonic() + 10
            for p in stopping:
                p.stop(timeout=max(0.1, deadline - time.monotonic()))
        finally:
            _restore_signal_handlers(ignored)
        if keep:
            alive = [p for p in self.procs if p.alive()]
            for p in alive:
                self.out(f"kept {p.name} (pid {p.popen.pid}; stop with: kill -- -{p.popen.pid})")
            self.out(
                f"kept: SUT http://127.0.0.1:{self.base_port} (token {self.token}), "
                f"collector http://127.0.0.1:{self.collector_port}, store {self.store_path}"
            )
        elif self.c.workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _relabel(table: Any, run_id: str) -> Any:
    """Slices of one side merged into one run: same spans, one run id."""
    import pyarrow as pa

    idx = table.schema.get_field_index("run_id")
    return table.set_column(idx, "run_id", pa.array([run_id] * table.num_rows, pa.string()))


def _merged_meta(run_id: str, spans: Any, users: int, seconds: float, bugs: list[str]) -> dict:
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


def private_sqlite_db(workdir: Path) -> Path:
    """A private copy of the seeded SUT database for one gate.

    Seeding takes seconds, so a template is seeded once (in SLO_GATE_SEED_DIR, default
    ~/.cache/slo-harness) and copied with SQLite's backup API (a consistent snapshot, ~25 MB,
    milliseconds). Private because the SUT writes to it (sign-ups) and `missing_index` really
    drops an index: gates running side by side must not share either.
    """
    import fcntl
    import sqlite3

    try:
        from sut import db as sut_db
        from sut import seed
    except ImportError as e:  # pragma: no cover - the SUT ships in the same distribution
        raise GateError(f"the SUT package is not importable: {e}") from e
    cache = Path(os.environ.get("SLO_GATE_SEED_DIR") or Path.home() / ".cache" / "slo-harness")
    cache.mkdir(parents=True, exist_ok=True)
    template = cache / f"sut-template-seed{getattr(seed, 'SEED_VERSION', '1')}.db"
    with open(cache / f"{template.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            seed.ensure_seeded(str(template))
            sut_db.set_inventory_index(str(template), True)
        except Exception as e:  # noqa: BLE001 - SutError or a driver error: one line
            raise GateError(f"could not prepare the SUT database {template}: {e}") from e
        dst_path = workdir / "sut.db"
        src = sqlite3.connect(str(template))
        dst = sqlite3.connect(str(dst_path))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    return dst_path


def _preload_check() -> None:
    import slo.baseline  # noqa: F401
    import slo.check  # noqa: F401
    import slo.report  # noqa: F401
    import slo.spec  # noqa: F401
    import slo.store  # noqa: F401


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}; stopped everything")


def _install_signal_handlers() -> dict[int, Any]:
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread: leave handlers alone
            previous[sig] = signal.signal(sig, _raise_interrupted)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(sig, handler)


def run_gate(config: GateConfig, out: Callable[[str], None] = print) -> int:
    """Run the gate; 0 pass, 1 fail. Raises GateError (and other SloError) for exit 2."""
    return Gate(config, out).run()
