"""Regressions judged over interleaved slices, as `slo gate` passes them to the check.

The spans are generated (spangen) in ABBA order, each slice with its own run id and start
time, each pair of neighbours slowed or sped up together by a "machine" factor: the noise a
shared box puts on a gate. A real change is found with its interval; the machine's noise is
not; a saved baseline without slices falls back to request-level tests and says so.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from spangen import ORDER, PRODUCTS, STOCK, generate

from slo.judge.baseline import build_baseline
from slo.judge.check import run_check
from slo.judge.spec import parse_spec
from slo.judge.stats import BODY
from slo.report.writers import to_markdown

SPEC = parse_spec(f"""\
version: 1
regression:
  latency: 10%
  latency_min: 0.5ms
detectors:
  sensitive_data: {{fail: false}}
  n_plus_one: {{fail: false}}
slos:
  - name: order-detail
    select: {{service: order-service, span: "{ORDER}"}}
    objectives: {{latency_p95: 10s, error_rate: 50%}}
  - name: product-list
    select: {{service: product-service, span: "{PRODUCTS}"}}
    objectives: {{latency_p95: 10s}}
  - name: stock
    select: {{service: inventory-service, span: "{STOCK}"}}
    objectives: {{latency_p95: 10s}}
""", "slo.yaml")

T0 = 1_767_225_600_000_000_000


def gate_like(pairs: int = 12, per_slice: int = 40, seed: int = 0, cand_scale: float = 1.0,
              bugs: tuple[str, ...] = (), machine_sd: float = 0.25
              ) -> tuple[pa.Table, pa.Table]:
    """Baseline and candidate span tables of an ABBA gate: B C C B B C ..."""
    rng = np.random.default_rng(seed)
    base, cand = [], []
    for k in range(pairs):
        machine = float(rng.lognormal(0, machine_sd))
        order = ("b", "c") if k % 2 == 0 else ("c", "b")
        for j, side in enumerate(order):
            i = 2 * k + j
            t = generate(per_slice, seed=seed * 1000 + i, run_id=f"g-{side}{i:02d}",
                         start_ns=T0 + i * 2_000_000_000,
                         scale=machine * (cand_scale if side == "c" else 1.0),
                         bugs=bugs if side == "c" else ())
            (base if side == "b" else cand).append(t)
    return pa.concat_tables(base), pa.concat_tables(cand)


def check(base: pa.Table, cand: pa.Table, with_slices: bool = True) -> dict:
    baseline = build_baseline(SPEC, base, slices=base["run_id"] if with_slices else None)
    return run_check(SPEC, cand, baseline, slices=cand["run_id"] if with_slices else None)


def reg(report: dict, slo: str, what: str = "latency_regression") -> dict:
    return next(r for r in report["results"] if r["slo"] == slo and r["objective"] == what)


def test_a_real_slowdown_fails_with_its_interval() -> None:
    report = check(*gate_like(cand_scale=1.6, seed=1))
    r = reg(report, "order-detail")
    assert r["status"] == "fail" and report["verdict"] == "fail"
    assert r["method"].startswith("slice pairs (12 ABBA pairs")
    assert r["ci_low"] > 0.1 and r["ci_low"] <= r["change"] <= r["ci_high"]
    assert r["ci_low"] < 0.6 < r["ci_high"]  # the true +60% is inside
    assert 0.99 <= r["confidence"] < 1
    assert r["pattern"] == "shift" and r["affected_share"] >= 0.8
    assert {c["stat"] for c in r["comparisons"]} == {BODY, "p90", "mean"}
    assert "confidence" in r["explanation"] and "%]" in r["explanation"]
    md = to_markdown(report)
    assert f"[{'+' if r['ci_low'] > 0 else ''}" in md and "shift: " in md


def test_machine_noise_between_pairs_is_not_a_regression() -> None:
    """A/A with strong pair-to-pair noise: the request-level tests (a saved baseline)
    call it a regression now and then; the slice pairs do not."""
    for seed in range(3):
        report = check(*gate_like(seed=10 + seed, machine_sd=0.4))
        regs = [r for r in report["results"] if r["kind"] == "regression"]
        assert all(r["status"] == "pass" for r in regs), [r["explanation"] for r in regs
                                                           if r["status"] != "pass"]
        lat = reg(report, "order-detail")
        assert lat["ci_low"] < 0 < lat["ci_high"]
        assert "Not significant" in lat["explanation"]
        # ... and how large a change these 12 pairs could have seen at all
        assert "With 12 slice pairs only a change above +" in lat["explanation"]


def test_an_n_plus_one_fails_its_count_regression_with_certainty() -> None:
    report = check(*gate_like(bugs=("n_plus_one",), seed=3))
    r = reg(report, "product-list", "db_queries_regression")
    assert r["status"] == "fail" and r["method"].startswith("slice pairs")
    assert r["ci_low"] > 5  # many more queries per request, and sure of it
    assert reg(report, "stock", "db_queries_regression")["status"] == "pass"


def test_without_slices_the_check_falls_back_and_says_so() -> None:
    base, cand = gate_like(cand_scale=1.6, seed=4)
    report = check(base, cand, with_slices=False)
    r = reg(report, "order-detail")
    assert r["method"].startswith("request-level: the baseline has no interleaved slices")
    assert r["ci_low"] is None and r["change"] == pytest.approx(0.6, abs=0.3)
    # A gate's baseline file used by a later gate: slices, but not interleaved.
    later = pa.concat_tables([cand.set_column(cand.schema.get_field_index("start_ns"),
                                              "start_ns", pa.compute.add(cand["start_ns"],
                                                                         10**12))])
    later = later.set_column(later.schema.get_field_index("end_ns"), "end_ns",
                             pa.compute.add(later["end_ns"], 10**12))
    r = reg(check(base, later), "order-detail")
    assert r["method"].startswith("request-level: too few slice pairs")


def test_the_typical_request_gets_the_larger_share_of_alpha() -> None:
    """Weighted Holm in the check: in an A/A gate nothing is rejected, and each latency
    statistic is reported at its share of alpha, the typical request's four times p90's and
    the mean's (LATENCY_WEIGHTS), so its interval is the narrower one."""
    from slo.judge.pairs import LATENCY_WEIGHTS

    report = check(*gate_like(seed=21))
    comps = {c["stat"]: c for c in reg(report, "order-detail")["comparisons"]}
    miss = {st: 1 - c["confidence"] for st, c in comps.items()}  # 2 x the one-sided level
    # (confidences are reported to 6 decimals)
    assert miss[BODY] == pytest.approx(miss["p90"] * LATENCY_WEIGHTS[BODY]
                                       / LATENCY_WEIGHTS["p90"], rel=2e-3)
    assert miss["p90"] == pytest.approx(miss["mean"], rel=2e-3)
    assert "weighted Holm over" in reg(report, "order-detail")["method"]
