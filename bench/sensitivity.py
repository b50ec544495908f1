"""Sensitivity of `slo gate`: its false alarm rate, its power, the smallest change it catches.

    .venv/bin/python bench/sensitivity.py                 # the full version (~3 h on 2 cores)
    .venv/bin/python bench/sensitivity.py --aa 4 --reps 2 --sizes 10,50 --long 60  # reduced

(a) False alarms. One long A/A gate (`--long` seconds per side, no bug) is recorded once; its
    slices, in time order, give neighbour pairs that saw the same machine. `--relabel` times,
    a window of as many pairs as a default gate has is drawn at random, each pair's two slices
    are assigned to baseline and candidate at random, and the whole decision (every SLO and
    regression kind of the embedded spec, Holm over the check) runs on it: the share of
    windows that fail is the false alarm rate under the machine's real, correlated noise. The
    same windows with the candidate's order-detail latencies multiplied by 1 + k give the
    power for a pure shift of k (the `--shifts` column "sim"). Then `--aa` real A/A gates.
(b) Power. `--reps` real gates per size in `--sizes` (percent) of `cpu_regression` (every
    order-detail request does N% more work: the median moves) and `tail_regression` (one
    request in ten does 10 x N% more: the tail moves, the mean by about N%). Detected = the
    gate fails on order-detail's latency regression.
(c) The smallest change detected in at least 95% of gates, per kind (real gates) and for a
    pure shift (simulation).

Every real gate is `slo gate` with the embedded defaults (12 s per side, 0.5 s slices); `--gate`
passes more arguments. Run it beside other work to see the busy machine: that is the point.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SLO = str(Path(sys.executable).with_name("slo"))
# Run as a script, this folder is first on sys.path, and bench/sut.py would shadow the `sut`
# package the gate imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
TARGET = ("order-detail", "latency_regression")  # where cpu_regression shows


def _defaults() -> tuple[float, int]:
    """A default gate's seconds per slice, and its ABBA pairs (seconds per side over that)."""
    from slo.gate import GateConfig

    c = GateConfig()
    return c.slice_seconds, round(c.duration / c.slice_seconds)


DEFAULT_SLICE, DEFAULT_PAIRS = _defaults()


def real_gate(bugs: str, extra: list[str]) -> dict[str, Any]:
    """One `slo gate`; its exit code, wall time, failing results and the target's interval."""
    with tempfile.TemporaryDirectory(prefix="sens-") as tmp:
        reports = Path(tmp) / "reports"
        cmd = [SLO, "gate", "--report-dir", str(reports), *extra]
        if bugs:
            cmd += ["--bugs", bugs]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=900)
        row: dict[str, Any] = {"bugs": bugs or "none", "exit": proc.returncode,
                               "wall_s": round(time.monotonic() - t0, 1), "by": [],
                               "target": None}
        path = reports / "slo-report.json"
        if proc.returncode not in (0, 1) or not path.is_file():
            row["by"] = ["ERROR: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:160]]
            return row
        report = json.loads(path.read_text())
    row["by"] = [f"{r['slo']}/{r['objective']}" for r in report["results"]
                 if r["status"] != "pass"]
    row["by"] += [f"finding:{f['detector']}" for f in report.get("findings", []) if f.get("fails")]
    for r in report["results"]:
        if (r["slo"], r["objective"]) == TARGET:
            row["target"] = {k: r.get(k) for k in ("status", "stat", "change", "ci_low",
                                                   "ci_high", "confidence", "method",
                                                   "pattern", "affected_share")}
    return row


# ------------------------------------------------------------------------- relabelled A/A


def record_long_aa(seconds: float, workdir: Path) -> Path:
    """A long A/A gate whose span store is kept in `workdir`; returns the store path."""
    from slo.gate import Gate, GateConfig

    cfg = GateConfig(duration=seconds, workdir=str(workdir), report_dir=str(workdir / "rep"))
    code = Gate(cfg, out=lambda s: None).run()
    if code not in (0, 1):
        raise SystemExit(f"the long A/A gate could not run (exit {code})")
    return workdir / "store"


def slice_table(store_path: Path) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """Per SLO, the summaries of every slice of a gate's store, in time order."""
    from slo.gate import embedded_spec_path
    from slo.ingest.store import SpanStore
    from slo.judge.spec import load_spec
    from slo.judge.summary import summarize_run

    spec = load_spec(embedded_spec_path())
    store = SpanStore(store_path)
    ids = [r.run_id for r in store.runs() if r.run_id and re.search(r"-[bc]\d+$", r.run_id)]
    spans = store.read(ids)
    body = summarize_run(spec, spans, "all", slices=spans["run_id"])
    order = sorted(range(len(body["slices"])), key=lambda i: body["slices"][i]["start_ns"])
    per_slo = {name: [s["slices"][i] for i in order] for name, s in body["slos"].items()}
    return spec, [per_slo], [body["slices"][i]["id"] for i in order]


def decide(spec: Any, per_slo: dict[str, list[dict]], pairs: list[tuple[int, int]],
           flips: np.ndarray, shift: float = 0.0) -> tuple[bool, dict[str, bool]]:
    """The gate's decision on relabelled slices, every SLO's latency `shift`ed in the
    candidate: (any comparison fails, {slo: would its latency regression fail alone}).

    "Alone": the SLO's smallest p-value clears Holm's first step, its weighted share of alpha
    (alpha * w / the family's total weight), which is what a regression of that one SLO must do; shifting every SLO at once would make the step-down
    easier than a real single regression has it."""
    from slo.judge.pairs import (
        can_reject,
        family_decisions,
        latency_comparisons,
        value_comparisons,
        weight,
    )

    comps, owners, weights = [], [], []
    for slo in spec.slos:
        sl = per_slo.get(slo.name)
        if not sl:
            continue
        reg = slo.regression
        sides = [(b, c) if not f else (c, b) for (b, c), f in zip(pairs, flips, strict=True)]

        def vals(key: str, side: int, sl: list[dict] = sl,
                 sides: list[tuple[int, int]] = sides) -> list[np.ndarray]:
            out = []
            for pair in sides:
                s = sl[pair[side]]
                if key == "errors":
                    out.append(np.r_[np.ones(s["errors"]), np.zeros(s["n"] - s["errors"])])
                else:
                    out.append(np.asarray(s[key], np.float64))
            return out

        if reg.latency is not None:
            cand = [c * (1 + shift) for c in vals("latency_ms", 1)]
            got = latency_comparisons(vals("latency_ms", 0), cand, reg.latency,
                                      reg.latency_min_ms)
            for c in got or []:
                comps.append(c)
                owners.append((slo.name, "latency_regression"))
                weights.append(weight("latency", c[0]))
        for what, thr in (("errors", reg.error_rate), ("db_queries", reg.db_queries),
                          ("repeated_queries", reg.repeated_queries)):
            if thr is None:
                continue
            for c in value_comparisons(vals(what, 0), vals(what, 1), thr) or []:
                comps.append(c)
                owners.append((slo.name, what))
                weights.append(weight(what, c[0]))
    if not comps:
        return False, {}
    alpha = min(s.regression.alpha for s in spec.slos)
    pvals, decided, _ = family_decisions(comps, alpha, weights)
    total = sum(w for w, (_, ch, _), p in zip(weights, comps, pvals, strict=True)
                if can_reject(ch, p))  # the family, as family_decisions has it
    alone: dict[str, bool] = {}
    for (name, what), p, w in zip(owners, pvals, weights, strict=True):
        if what == "latency_regression":
            alone[name] = alone.get(name, False) or p <= alpha * w / total
    return any(rej for rej, _ in decided), alone


def relabel(spec: Any, per_slo: dict[str, list[dict]], n_slices: int, reps: int,
            window: int, shifts: list[float], seed: int = 1) -> dict[str, Any]:
    """False alarm rate over random windows and relabellings; power of simulated shifts."""
    rng = np.random.default_rng(seed)
    all_pairs = [(2 * k, 2 * k + 1) for k in range(n_slices // 2)]
    window = min(window, len(all_pairs))
    alarms = 0
    power: dict[float, dict[str, int]] = {s: {} for s in shifts}
    for rep in range(reps):
        if rep and rep % 100 == 0:
            print(f"    ... {rep}/{reps} relabellings, {alarms} false alarms", flush=True)
        start = int(rng.integers(0, len(all_pairs) - window + 1))
        pairs = all_pairs[start:start + window]
        flips = rng.integers(0, 2, len(pairs)).astype(bool)
        alarms += decide(spec, per_slo, pairs, flips)[0]
        for s in shifts:
            for name, hit in decide(spec, per_slo, pairs, flips, s)[1].items():
                power[s][name] = power[s].get(name, 0) + hit
    return {"reps": reps, "window_pairs": window, "pairs_available": len(all_pairs),
            "false_alarms": alarms,
            "power": {f"{s * 100:g}": {k: v / reps for k, v in power[s].items()}
                      for s in shifts}}


def needed_duration(spec: Any, per_slo: dict[str, list[dict]], n_slices: int, window: int,
                    shift: float = 0.10, power: float = 0.95, windows: int = 60,
                    seed: int = 5) -> list[dict[str, Any]]:
    """Per SLO: the standard error of the p5-50 change at `window` pairs (median over random
    windows of the recording) and the pairs a pure `shift` needs to be caught with `power` at
    the level a default check gives p5-50 (its weighted share of alpha over the recording's
    live comparisons), assuming the error falls with 1 / sqrt(pairs). What the gate's duration
    would have to be on a machine as noisy as the recording's."""
    from scipy import stats as sps

    from slo.judge.pairs import LATENCY_WEIGHTS, weight
    from slo.judge.stats import BODY, paired_change

    rng = np.random.default_rng(seed)
    n_pairs = n_slices // 2
    window = min(window, n_pairs)
    # the family of a default check on this recording: every SLO's latency statistics, plus
    # one count or error comparison per SLO and kind that varies
    total = sum(LATENCY_WEIGHTS.values()) * len(per_slo) + sum(
        weight(what, "mean") for sl in per_slo.values()
        for what in ("errors", "db_queries", "repeated_queries")
        if len({s["errors"] if what == "errors" else tuple(s[what]) for s in sl}) > 1)
    level = spec.slos[0].regression.alpha * LATENCY_WEIGHTS[BODY] / total
    rows = []
    for slo in spec.slos:
        sl = per_slo.get(slo.name) or []
        ses = []
        for _ in range(windows):
            start = int(rng.integers(0, n_pairs - window + 1))
            pairs = [(2 * k, 2 * k + 1) for k in range(start, start + window)]
            ch = paired_change([np.asarray(sl[i]["latency_ms"], np.float64) for i, _ in pairs],
                               [np.asarray(sl[j]["latency_ms"], np.float64) for _, j in pairs],
                               BODY, "log")
            if ch is not None and ch.se > 0:
                ses.append(ch.se)
        row: dict[str, Any] = {"slo": slo.name, "per_slice": float(np.mean([x["n"] for x in sl]))
                               if sl else 0.0, "se": None, "pairs": None}
        if ses:
            se = float(np.median(ses))
            gap = np.log1p(shift) - np.log1p(slo.regression.latency or 0.0)
            z = sps.norm.isf(1 - power)
            row["se"] = se
            row["pairs"] = next((n for n in range(4, 100_000) if (
                sps.t.isf(level, n - 1) + z) * se * np.sqrt(window / n) <= gap), None)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ main


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion k/n (honest at 0 of 20)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--long", type=float, default=240.0,
                    help="seconds per side of the long A/A gate (default 240; 0: skip (a))")
    ap.add_argument("--keep", help="a folder for the long A/A gate's files, kept: when it holds "
                    "a recording already (from an earlier run), that one is reused")
    ap.add_argument("--relabel", type=int, default=1000, help="relabellings (default 1000)")
    ap.add_argument("--window", type=int, default=DEFAULT_PAIRS,
                    help=f"pairs per relabelled gate (default {DEFAULT_PAIRS}: a default gate)")
    ap.add_argument("--shifts", default="5,10,20,30,50,100",
                    help="simulated pure shifts of order-detail, percent")
    ap.add_argument("--aa", type=int, default=20, help="real A/A gates (default 20)")
    ap.add_argument("--reps", type=int, default=20, help="real gates per size and kind")
    ap.add_argument("--sizes", default="5,10,20,50", help="regression sizes, percent")
    ap.add_argument("--kinds", default="cpu_regression,tail_regression")
    ap.add_argument("--spec", help="judge the relabelled slices by this spec instead of the "
                    "embedded one (to compare thresholds on the same recording)")
    ap.add_argument("--weights", help="relabelled gates only: the latency statistics' shares of "
                    "alpha, e.g. 1,1,1 (p5-50, p90, mean; default slo.judge.pairs.LATENCY_WEIGHTS)")
    ap.add_argument("--json", help="also write everything to this file")
    ap.add_argument("--gate", nargs=argparse.REMAINDER, default=[],
                    help="more `slo gate` arguments (last)")
    args = ap.parse_args()
    out: dict[str, Any] = {"args": vars(args)}
    shifts = [float(s) / 100 for s in args.shifts.split(",") if s]
    slice_s = DEFAULT_SLICE
    if args.weights:
        from slo.judge import pairs

        pairs.LATENCY_WEIGHTS = dict(zip(pairs.SLICE_STATS, map(float, args.weights.split(",")),
                                         strict=True))

    if args.long > 0:
        with tempfile.TemporaryDirectory(prefix="sens-long-") as tmp:
            t0 = time.monotonic()
            work = Path(args.keep or tmp)
            store = work / "store"
            if not store.is_dir():
                store = record_long_aa(args.long, work)
            spec, (per_slo,), labels = slice_table(store)
            if args.spec:
                from slo.judge.spec import load_spec

                spec = load_spec(args.spec)
            print(f"(a) long A/A gate: {len(labels)} slices ({time.monotonic() - t0:.0f} s)",
                  flush=True)
            t0 = time.monotonic()
            res = relabel(spec, per_slo, len(labels), args.relabel, args.window, shifts)
            res["seconds"] = round(time.monotonic() - t0, 1)
            out["relabel"] = res
            lo, hi = wilson(res["false_alarms"], res["reps"])
            print(f"    relabelled: {res['false_alarms']} false alarms in {res['reps']} gates "
                  f"of {res['window_pairs']} pairs (95% CI {lo * 100:.2f}%-{hi * 100:.2f}%)",
                  flush=True)
            names = sorted({n for v in res["power"].values() for n in v})
            print("\n    simulated pure shift of one SLO's latency -> share of gates that fail it")
            print("    | SLO | " + " | ".join(f"+{k}%" for k in res["power"]) + " |")
            print("    | --- |" + " --- |" * len(res["power"]))
            for n in names:
                print(f"    | {n} | " + " | ".join(f"{v.get(n, 0) * 100:.0f}%"
                                                  for v in res["power"].values()) + " |")
            need = needed_duration(spec, per_slo, len(labels), args.window)
            out["needed"] = need
            print(f"\n    what +10% needs for 95% power on a machine this noisy ({slice_s:g} s "
                  "slices; error ~ 1/sqrt(pairs))")
            print(f"    | SLO | requests per slice | SE of p5-50 change at {res['window_pairs']} "
                  "pairs | pairs needed | seconds per side |")
            print("    | --- | --- | --- | --- | --- |")
            for r in need:
                se = f"{r['se'] * 100:.1f}%" if r["se"] is not None else "-"
                n = r["pairs"]
                print(f"    | {r['slo']} | {r['per_slice']:.1f} | {se} | {n or '-'} | "
                      f"{n * slice_s:g} |" if n else f"    | {r['slo']} | {r['per_slice']:.1f} | "
                      f"{se} | - | - |")

    rows: list[dict[str, Any]] = []
    plan = [""] * args.aa
    for kind in [k for k in args.kinds.split(",") if k]:
        for size in [s for s in args.sizes.split(",") if s]:
            plan += [f"{kind}:{size}"] * args.reps
    for i, bugs in enumerate(plan, 1):
        row = real_gate(bugs, args.gate)
        rows.append(row)
        t = row["target"] or {}
        print(f"[{i}/{len(plan)}] {row['bugs']:<22} exit {row['exit']} {row['wall_s']:5.1f} s "
              f"target {t.get('status')} {t.get('stat')} {t.get('change')} "
              f"[{t.get('ci_low')}, {t.get('ci_high')}]  {', '.join(row['by'][:4])}",
              flush=True)
    out["gates"] = rows

    print("\n| gates | ran (exit 0/1) | failed (A/A: false alarm) | 95% CI | could not run | "
          "wall s (mean) |")
    print("| --- | --- | --- | --- | --- | --- |")
    smallest: dict[str, str] = {}
    for bugs in dict.fromkeys(r["bugs"] for r in rows):
        broken = sum(r["exit"] not in (0, 1) for r in rows if r["bugs"] == bugs)
        rs = [r for r in rows if r["bugs"] == bugs and r["exit"] in (0, 1)]
        if not rs:
            continue
        if bugs == "none":
            k = sum(r["exit"] == 1 for r in rs)
        else:
            k = sum(r["exit"] == 1 and f"{TARGET[0]}/{TARGET[1]}" in r["by"] for r in rs)
            kind = bugs.split(":")[0]
            if k / len(rs) >= 0.95 and kind not in smallest:
                smallest[kind] = bugs.split(":")[1] + "%"
        lo, hi = wilson(k, len(rs))
        print(f"| {bugs} | {len(rs)} | {k}/{len(rs)} | {lo * 100:.0f}-{hi * 100:.0f}% | "
              f"{broken} | {np.mean([r['wall_s'] for r in rs]):.1f} |")
    if "relabel" in out:
        for name in sorted({n for v in out["relabel"]["power"].values() for n in v}):
            sim = [k for k, v in out["relabel"]["power"].items() if v.get(name, 0) >= 0.95]
            smallest[f"pure shift of {name} (simulated)"] = (f"{sim[0]}%" if sim
                                                             else "none of --shifts")
    if smallest or rows:
        print("\n(c) smallest change detected in >= 95% of gates: " + (", ".join(
            f"{k}: {v}" for k, v in smallest.items()) or "none of the sizes run"))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
