"""Wall time of a commands-kind `slo gate` (the example shop, two releases side by side).

    .venv/bin/python bench/gate_commands.py                 # 10 s per side, A/B, 2 runs
    .venv/bin/python bench/gate_commands.py --duration 10 --runs 3 --aa

The reference is the load the gate must run anyway, measured in the same run: the warm-up
plus both sides' slices with their gaps (the gate's own "load done in N s" line). The ratio
wall / load is the gate's overhead (collector, two deployments starting, Locust, the check).
Goal: with 10 s per side, the whole gate within 60 s on this 2-core box.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"


def one_gate(duration: float, aa: bool) -> dict:
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    cmd = [str(bindir / "slo"), "gate", "--duration", str(duration)]
    if aa:
        cmd += ["--candidate-cmd", "OTEL_SERVICE_NAME=shop opentelemetry-instrument "
                "python app.py --port {port} --release 1"]
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        cmd += ["--report-dir", tmp]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=SHOP, env=env, capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - t0
    load = re.search(r"load done in (\d+) s", proc.stdout)
    load_s = float(load.group(1)) if load else float("nan")
    return {"exit": proc.returncode, "wall_s": round(wall, 1), "load_s": load_s,
            "ratio": round(wall / load_s, 2) if load else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per side (10)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--aa", action="store_true", help="release 1 on both sides (must pass)")
    args = ap.parse_args()
    want = 0 if args.aa else 1
    rows = []
    for i in range(args.runs):
        row = one_gate(args.duration, args.aa)
        rows.append(row)
        print(f"[{i + 1}/{args.runs}] exit {row['exit']} (want {want})  wall {row['wall_s']} s  "
              f"load {row['load_s']} s  wall/load {row['ratio']}", flush=True)
    worst = max(r["wall_s"] for r in rows)
    ok = all(r["exit"] == want for r in rows)
    print(f"verdicts as expected: {ok}; worst wall {worst} s (goal <= 60 s)")
    return 0 if ok and worst <= 60 else 1


if __name__ == "__main__":
    sys.exit(main())
