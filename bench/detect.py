"""Detection matrix of `slo gate`: is every bug caught, and is a clean build never failed?

    .venv/bin/python bench/detect.py                    # 10 clean gates + 3 per bug (~25 min)
    .venv/bin/python bench/detect.py --clean 3 --per-bug 1 --bugs n_plus_one,slow_downstream

Each row is one real `slo gate` (collector, SUT and Locust as processes) on the embedded
defaults. For a bug: detected = exit 1, and "by" lists the failing objectives (slo/objective)
and failing findings (detector). For no bug: a pass is exit 0. Wall time is the whole gate.
Goal: every bug caught in every run, no false alarm, each gate <= 60 s on a 2-core box.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUGS = ("missing_index", "n_plus_one", "cache_bypass", "slow_downstream", "serial_fanout",
        "error_burst", "broken_propagation")
SLO = str(Path(sys.executable).with_name("slo"))


def one_gate(bug: str | None, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="detect-") as tmp:
        reports = Path(tmp) / "reports"
        cmd = [SLO, "gate", "--report-dir", str(reports), *extra]
        if bug:
            cmd += ["--bugs", bug]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - t0
        by: list[str] = []
        if proc.returncode in (0, 1) and (reports / "slo-report.json").is_file():
            report = json.loads((reports / "slo-report.json").read_text())
            by = [f"{r['slo']}/{r['objective']}" for r in report["results"] if r["status"] != "pass"]
            by += [f"finding:{f['detector']}" for f in report.get("findings", []) if f.get("fails")]
        else:
            by = ["ERROR: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:120]]
    return {"bug": bug or "none", "exit": proc.returncode, "wall_s": round(wall, 1), "by": by}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clean", type=int, default=10, help="gates without a bug (default 10)")
    ap.add_argument("--per-bug", type=int, default=3, help="gates per bug (default 3)")
    ap.add_argument("--bugs", default=",".join(BUGS), help="comma-separated bugs (default all seven)")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("gate_args", nargs="*", help="extra `slo gate` arguments (after --)")
    args = ap.parse_args()

    plan: list[str | None] = [None] * args.clean
    for bug in [b for b in args.bugs.split(",") if b]:
        plan += [bug] * args.per_bug
    rows = []
    for i, bug in enumerate(plan, 1):
        row = one_gate(bug, args.gate_args)
        rows.append(row)
        ok = (row["exit"] == 0) if bug is None else (row["exit"] == 1)
        print(f"[{i}/{len(plan)}] {row['bug']:<20} exit {row['exit']}  {row['wall_s']:5.1f} s  "
              f"{'ok' if ok else 'WRONG'}  {', '.join(row['by'][:4])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))

    print("\n| bug | runs | caught (clean: passed) | by | wall s (mean / max) |")
    print("| --- | --- | --- | --- | --- |")
    all_ok = True
    for bug in ["none", *[b for b in args.bugs.split(",") if b]]:
        rs = [r for r in rows if r["bug"] == bug]
        if not rs:
            continue
        good = sum(1 for r in rs if r["exit"] == (0 if bug == "none" else 1))
        all_ok &= good == len(rs)
        by: dict[str, int] = {}
        for r in rs:
            for b in r["by"]:
                by[b] = by.get(b, 0) + 1
        walls = [r["wall_s"] for r in rs]
        print(f"| {bug} | {len(rs)} | {good}/{len(rs)} | "
              f"{', '.join(f'{k} x{v}' for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:4]) or '-'} | "
              f"{statistics.mean(walls):.1f} / {max(walls):.1f} |")
    slow = [r for r in rows if r["wall_s"] > 60]
    print(f"\nall as expected: {all_ok}; gates over 60 s: {len(slow)} of {len(rows)}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
