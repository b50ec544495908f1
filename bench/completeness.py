"""Benchmark: what the completeness pass and the N+1-calls detector add to a check.

Both run on every `slo check`; they must stay small next to it. Over SUT-shaped traces
(tests/slo/spangen.py), the same run times, each best of `--repeat`:
  reference: `run_check` with the completeness pass stubbed out (every trace complete);
  `run_check` as shipped: the difference is what the completeness pass costs a check
  (the run index it shares with the objectives is built either way);
  the `n_plus_one_http` detector alone (one DuckDB context), next to the N+1 query one.
Printed as seconds and as ratios to the reference.

    .venv/bin/python bench/completeness.py [--traces 40000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "slo"))


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=40000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from spangen import ORDER, generate

    from slo.judge import detectors
    from slo.judge.check import run_check
    from slo.judge.completeness import assess
    from slo.judge.spec import parse_spec
    from slo.judge.tree import RunIndex

    table = generate(args.traces, seed=1, bugs=["n_plus_one"])
    spec = parse_spec(f"""
version: 1
slos:
  - name: order-detail
    select: {{service: order-service, span: "{ORDER}"}}
    objectives: {{latency_p95: 400ms, error_rate: 1%, db_queries: 8, repeated_queries: 3}}
""")
    from slo.judge import completeness

    def stub(ix: RunIndex, requests: int | None = None) -> completeness.Completeness:
        import numpy as np

        return completeness.Completeness(traces=1, complete=1, row_complete=np.ones(ix.n, bool))

    completeness.assess = stub
    ref = best(lambda: run_check(spec, table), args.repeat)
    completeness.assess = assess
    whole = best(lambda: run_check(spec, table), args.repeat)

    def only(name: str) -> float:
        def run() -> None:
            ctx = detectors._Context(table)
            try:
                detectors._DETECTORS[name](ctx, dict(detectors.DEFAULTS[name]))
            finally:
                ctx.con.close()
        return best(run, args.repeat)

    http, queries = only("n_plus_one_http"), only("n_plus_one")
    print(f"{table.num_rows} spans, {args.traces} traces")
    print(f"run_check, no completeness (reference) {ref:7.3f} s  1.00")
    print(f"run_check with completeness            {whole:7.3f} s  {whole / ref:.2f}")
    print(f"n_plus_one_http detector alone         {http:7.3f} s  {http / ref:.2f}")
    print(f"n_plus_one detector alone              {queries:7.3f} s  {queries / ref:.2f}")


if __name__ == "__main__":
    main()
