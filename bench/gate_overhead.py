"""Where a sut-target `slo gate` spends its wall time: load vs everything else.

    .venv/bin/python bench/gate_overhead.py                     # --duration 6, 2 runs
    .venv/bin/python bench/gate_overhead.py --duration 6 --runs 3 --bugs n_plus_one
    PYTHONPATH=/tmp/old-tree .venv/bin/python bench/gate_overhead.py   # another tree's gate

Runs real gates (collector, SUT, Locust, check) and prints a phase table per run. The
reference is the load the gate must run anyway, measured in the same run: the slices (with
their gaps). Everything else is the gate's overhead ("non-load"): start-up, readiness,
warm-up, waiting for the last spans, the check, the reports, shutdown. The ratio non-load /
load is the figure to cut; issue 12's goal is non-load at most 6 s. Each run also prints the
CPU seconds of the gate's whole process tree (load included), the figure that a shared box's
noise moves least.

Phases come from the gate's report (`report["gate"]["phases"]`, seconds) when it has them;
otherwise (an older gate) from the arrival times of the gate's own progress lines, stamped
by this script as they arrive, so the two can be compared. Python start-up before the first
line and shutdown after the last are always measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (phase, the progress line that starts it) for gates that do not report their phases
MARKERS = [
    ("collector+db copy", "starting collector"),
    ("sut+locust+traffic", "starting SUT"),
    ("warmup", "warm-up "),
    ("load", " phase, slice 1/"),
    ("after load", "load done in"),
    ("spans", "waiting for the last spans"),
    ("check+reports", "checking candidate against baseline"),
    ("summary", "SLO verdict:"),
    ("end", "s, exit "),
]


def one_gate(duration: float, bugs: str, users: int, warmup: float | None) -> dict:
    bindir = Path(sys.executable).parent
    pythonpath = os.environ.get("PYTHONPATH") or str(ROOT)
    env = dict(os.environ, PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1",
               PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    with tempfile.TemporaryDirectory(prefix="gate-overhead-") as tmp:
        cmd = [sys.executable, "-c", "import sys; from slo.cli import main; sys.exit(main())",
               "gate", "--duration", str(duration), "--users", str(users),
               "--report-dir", tmp]
        if bugs:
            cmd += ["--bugs", bugs]
        if warmup is not None:
            cmd += ["--warmup", str(warmup)]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines: list[tuple[float, str]] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - t0, line.rstrip()))
        code = proc.wait()
        wall = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # every process of the gate's tree that its parent reaped: gate, collector, Locust,
        # the SUT (`sut up`, gunicorn masters and workers): load and non-load together
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        report_path = Path(tmp) / "slo-report.json"
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if code not in (0, 1):
        tail = "\n".join(text for _, text in lines[-15:])
        raise SystemExit(f"gate exited {code}:\n{tail}")
    first = lines[0][0] if lines else wall
    last_gate_line = next((t for t, text in reversed(lines) if "s, exit " in text), wall)
    phases = (report.get("gate") or {}).get("phases")
    if phases:
        # the gate's own clock, from its start; the report is written after the "check" phase
        if m := re.match(r"\[gate\s+([\d.]+)s\]", lines[0][1]):
            first -= float(m.group(1))  # the gate's clock had run that long at its first line
        rows = {"python start-up": first}
        rows.update({k: v for k, v in phases.items() if isinstance(v, (int, float))})
        summary = next((t for t, text in lines if "SLO verdict:" in text), last_gate_line)
        rows["reports+summary"] = summary - first - sum(phases.values())
        rows["rest of the gate"] = last_gate_line - summary
        load = float(phases.get("load", 0.0))
    else:
        rows = {"python start-up": first}
        stamps = []
        for name, marker in MARKERS:
            t = next((t for t, text in lines if marker in text), None)
            if t is not None:
                stamps.append((name, t))
        for (name, t), (_, t_next) in zip(stamps, stamps[1:], strict=False):
            rows[name] = t_next - t
        load = rows.get("load", 0.0)
    rows["shutdown+exit"] = wall - last_gate_line
    non_load = wall - load
    return {"exit": code, "wall": wall, "cpu": cpu, "load": load, "non_load": non_load,
            "ratio": non_load / load if load else float("nan"), "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of load per side (6)")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--bugs", default="", help="candidate bugs (default none: an A/A gate)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=None, help="the gate's --warmup (default its own)")
    args = ap.parse_args()
    print(f"gate --duration {args.duration:g} --users {args.users}"
          + (f" --bugs {args.bugs}" if args.bugs else "")
          + (f" --warmup {args.warmup:g}" if args.warmup is not None else "")
          + f"; PYTHONPATH={os.environ.get('PYTHONPATH') or ROOT}", flush=True)
    results = []
    for i in range(args.runs):
        r = one_gate(args.duration, args.bugs, args.users, args.warmup)
        results.append(r)
        print(f"\nrun {i + 1}/{args.runs}: exit {r['exit']}, wall {r['wall']:.1f} s, "
              f"load {r['load']:.1f} s, non-load {r['non_load']:.1f} s, "
              f"non-load/load {r['ratio']:.2f}, CPU of the gate's processes {r['cpu']:.1f} s")
        for name, sec in r["rows"].items():
            mark = "  (load)" if name == "load" else ""
            print(f"  {name:<22} {sec:6.2f} s{mark}")
    non_load = [r["non_load"] for r in results]
    print(f"\nnon-load median {statistics.median(non_load):.1f} s "
          f"(min {min(non_load):.1f}, max {max(non_load):.1f}); goal <= 6 s; "
          f"non-load/load median {statistics.median(r['ratio'] for r in results):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
