"""Where a sut-target `slo gate` spends its wall time: load vs everything else.

    .venv/bin/python bench/gate_overhead.py                     # --duration 6, 2 runs
    .venv/bin/python bench/gate_overhead.py --duration 6 --runs 3 --bugs n_plus_one
    PYTHONPATH=/tmp/old-tree .venv/bin/python bench/gate_overhead.py   # another tree's gate
    .venv/bin/python bench/gate_overhead.py --runs 3 --busy 1 --alternate   # quiet, busy, quiet, ...
    .venv/bin/python bench/gate_overhead.py --runs 3 --busy 1 --alternate --tree /tmp/old-tree --tree .

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

A busy box: `--busy N` holds N cores with spinning processes (`while True: pass`) started
before each gate and killed after it, the way a neighbouring job would; with `--alternate`
runs take turns quiet and busy, and with several `--tree`s the trees take turns too (every
combination once per round, `--runs` rounds), so one session's drift hits every condition
alike. The end is a table of each phase's median per condition.
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


def start_hogs(n: int) -> list[subprocess.Popen]:
    """`n` processes that each spin one core until killed: another job on the box."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for h in hogs:
        h.kill()
        h.wait()


def one_gate(duration: float, bugs: str, users: int, warmup: float | None,
             tree: str | None = None) -> dict:
    bindir = Path(sys.executable).parent
    pythonpath = tree or os.environ.get("PYTHONPATH") or str(ROOT)
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
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="hold N cores with spinning processes during each gate (0)")
    ap.add_argument("--alternate", action="store_true",
                    help="with --busy: alternate quiet and busy runs (--runs of each)")
    ap.add_argument("--tree", action="append", default=[], metavar="PATH",
                    help="the source tree whose gate runs (PYTHONPATH); repeat to alternate trees")
    args = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in args.tree] or [os.environ.get("PYTHONPATH") or str(ROOT)]
    loads = [0, args.busy] if args.alternate and args.busy else [args.busy]
    print(f"gate --duration {args.duration:g} --users {args.users}"
          + (f" --bugs {args.bugs}" if args.bugs else "")
          + (f" --warmup {args.warmup:g}" if args.warmup is not None else "")
          + f"; trees {', '.join(trees)}; busy cores {' / '.join(map(str, loads))}; "
          + f"{os.cpu_count()} CPUs", flush=True)
    conditions = [(tree, busy) for busy in loads for tree in trees]
    results: dict[tuple[str, int], list[dict]] = {c: [] for c in conditions}
    for i in range(args.runs):
        for tree, busy in conditions:
            hogs = start_hogs(busy)
            try:
                r = one_gate(args.duration, args.bugs, args.users, args.warmup, tree)
            finally:
                stop_hogs(hogs)
            results[(tree, busy)].append(r)
            print(f"\nrun {i + 1}/{args.runs} ({name_of(tree, busy, trees)}): exit {r['exit']}, "
                  f"wall {r['wall']:.1f} s, load {r['load']:.1f} s, non-load {r['non_load']:.1f} s, "
                  f"non-load/load {r['ratio']:.2f}, CPU of the gate's processes {r['cpu']:.1f} s",
                  flush=True)
            for name, sec in r["rows"].items():
                mark = "  (load)" if name == "load" else ""
                print(f"  {name:<22} {sec:6.2f} s{mark}", flush=True)
    print()
    for cond, rs in results.items():
        non_load = [r["non_load"] for r in rs]
        print(f"{name_of(*cond, trees)}: non-load median {statistics.median(non_load):.1f} s "
              f"(min {min(non_load):.1f}, max {max(non_load):.1f}); goal <= 6 s; "
              f"non-load/load median {statistics.median(r['ratio'] for r in rs):.2f}")
    if len(conditions) > 1:
        print_table(results, trees)
    return 0


def name_of(tree: str, busy: int, trees: list[str]) -> str:
    where = f"tree {trees.index(tree) + 1}, " if len(trees) > 1 else ""
    return where + (f"busy {busy}" if busy else "quiet")


def print_table(results: dict[tuple[str, int], list[dict]], trees: list[str]) -> None:
    """Each phase's median per condition (seconds), non-load's last."""
    names: list[str] = []
    for rs in results.values():
        for r in rs:
            names += [n for n in r["rows"] if n not in names]
    heads = [name_of(*c, trees) for c in results]
    width = max(10, *(len(h) for h in heads))
    print("\nmedians (s)".ljust(24) + "".join(h.rjust(width + 2) for h in heads))
    for n in [*names, "non_load", "cpu"]:
        cells = []
        for rs in results.values():
            vals = [r[n] if n in ("non_load", "cpu") else r["rows"].get(n) for r in rs]
            vals = [v for v in vals if v is not None]
            cells.append(f"{statistics.median(vals):.2f}" if vals else "-")
        label = {"non_load": "NON-LOAD", "cpu": "CPU (tree)"}.get(n, n)
        print(f"  {label:<22}" + "".join(c.rjust(width + 2) for c in cells))


if __name__ == "__main__":
    sys.exit(main())
