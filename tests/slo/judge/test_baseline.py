"""Baselines: saved compactly, read back strictly; A/A passes, A/B regressions fail and say why."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from spangen import ORDER, PRODUCTS, STOCK, generate

from slo.errors import BaselineError
from slo.judge.baseline import build_baseline, load_baseline, save_baseline
from slo.judge.check import run_check
from slo.judge.spec import parse_spec

SPEC = parse_spec(f"""\
version: 1
regression:
  latency: 20%
  latency_min: 1ms
detectors:
  sensitive_data: {{fail: false}}
slos:
  - name: order-detail
    select: {{service: order-service, span: "{ORDER}"}}
    objectives: {{latency_p95: 1s, error_rate: 50%}}
  - name: product-list
    select: {{service: product-service, span: "{PRODUCTS}"}}
    objectives: {{latency_p95: 1s}}
  - name: stock
    select: {{service: inventory-service, span: "{STOCK}"}}
    objectives: {{latency_p95: 1s}}
  - name: users
    select: {{service: user-service, span_regex: "^GET /users"}}
    objectives: {{latency_p95: 1s, error_rate: 50%}}
""", "slo.yaml")

N = 700


@pytest.fixture(scope="module")
def base() -> dict:
    return build_baseline(SPEC, generate(N, seed=100, run_id="base"))


def regressions(report: dict, status: str = "fail") -> dict[tuple[str, str], dict]:
    return {(r["slo"], r["objective"]): r for r in report["results"]
            if r["kind"] == "regression" and r["status"] == status}


def test_baseline_is_compact_versioned_json(base: dict, tmp_path: Path) -> None:
    assert base["version"] == 1 and base["kind"] == "slo-baseline" and base["run_id"] == "base"
    od = base["slos"]["order-detail"]
    assert od["samples"] > 100 and len(od["latency_ms"]) == od["samples"]
    assert set(od["db_queries"]) == {"p50", "max", "mean"}
    assert od["profile"]["groups"] and od["statements"]
    assert set(od["trace_ids"]) == {"p50", "p90"}
    assert set(od["trace_ids"].values()) <= set(base["traces"])
    assert all(t["role"] == "baseline" for t in base["traces"].values())
    path = save_baseline(base, tmp_path / "b.json")
    assert load_baseline(path) == json.loads(json.dumps(base))
    gz = save_baseline(base, tmp_path / "b.json.gz")
    assert gz.read_bytes()[:2] == b"\x1f\x8b" and load_baseline(gz)["slos"] == base["slos"]
    assert path.stat().st_size < 400_000


def test_baseline_keeps_at_most_a_few_thousand_samples() -> None:
    big = build_baseline(SPEC, generate(5000, seed=1, mix={"stock": 1.0}))
    st = big["slos"]["stock"]
    assert st["samples"] == 5000 and len(st["latency_ms"]) == 2000


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_a_passes_repeatedly(base: dict, seed: int) -> None:
    report = run_check(SPEC, generate(N, seed=seed, run_id=f"a{seed}"), base)
    assert report["verdict"] == "pass", [r["explanation"] for r in report["results"]
                                         if r["status"] != "pass"]
    assert report["baseline_run_id"] == "base"
    assert len(regressions(report, "pass")) == 16


def test_shifted_latency_fails_and_names_the_span(base: dict) -> None:
    cand = generate(N, seed=7, run_id="slow", extra_ms={STOCK: 15.0})
    report = run_check(SPEC, cand, base)
    failed = regressions(report)
    assert ("stock", "latency_regression") in failed
    assert ("order-detail", "latency_regression") in failed
    r = failed[("stock", "latency_regression")]
    assert r["significant"] is True and r["p_value"] < 0.01
    assert "significant (Mann-Whitney U" in r["explanation"]
    assert r["observed"] > 15 and r["baseline"] < 2
    top = r["contributions"][0]
    assert top["service"] == "inventory-service" and top["span"] == STOCK
    assert top["share"] > 0.8 and top["candidate_ms"] > top["baseline_ms"]
    assert "inventory-service `GET /stock`" in r["explanation"]
    assert r["trace_id"] in report["traces"]
    assert r["baseline_trace_id"] in report["traces"]
    assert report["traces"][r["baseline_trace_id"]]["role"] == "baseline"
    assert {("product-list", "latency_regression"), ("users", "latency_regression")}.isdisjoint(
        failed)
    objective = [x for x in report["results"] if x["slo"] == "stock"
                 and x["objective"] == "latency_p95"][0]
    assert objective["baseline"] == pytest.approx(base["slos"]["stock"]["latency"]["p95"])
    slos = {s["name"]: s for s in report["slos"]}
    assert slos["stock"]["latency_ms"]["baseline"] == base["slos"]["stock"]["latency_ms"]


def test_tail_only_slowdown_fails_on_the_mean(base: dict) -> None:
    """missing_index: only cache misses (~10%) get slower; the median does not move."""
    report = run_check(SPEC, generate(N, seed=8, bugs=["missing_index"]), base)
    r = regressions(report)[("stock", "latency_regression")]
    assert "mean" in r["explanation"] and "Welch" in r["explanation"]
    assert "inventory WHERE product_id IN (?)" in r["explanation"]


def test_added_repeated_query_fails_with_the_statement(base: dict) -> None:
    cand = generate(N, seed=9, repeated={"SELECT * FROM audit WHERE id = ?": 6})
    failed = regressions(run_check(SPEC, cand, base))
    db = failed[("product-list", "db_queries_regression")]
    assert db["observed"] == db["baseline"] + 6
    assert "SELECT * FROM audit WHERE id = ?` now runs 6.00 times per request" in \
        db["explanation"]
    rep = failed[("product-list", "repeated_queries_regression")]
    assert rep["observed"] == 6 and rep["baseline"] == 1
    assert ("order-detail", "db_queries_regression") not in failed


def test_cache_bypass_fails_on_the_per_request_median(base: dict) -> None:
    failed = regressions(run_check(SPEC, generate(N, seed=10, bugs=["cache_bypass"]), base))
    r = failed[("stock", "db_queries_regression")]
    assert r["observed"] == 1 and r["baseline"] == 0  # the max did not move, the median did
    assert "median 0 -> 1" in r["explanation"]
    assert ("order-detail", "db_queries_regression") in failed


def test_added_error_rate_fails_with_a_proportion_test(base: dict) -> None:
    report = run_check(SPEC, generate(N, seed=11, error_rate=0.15), base)
    failed = regressions(report)
    r = failed[("users", "error_rate_regression")]
    assert r["unit"] == "ratio" and r["baseline"] == 0.0 and r["observed"] > 0.08
    assert "significant (Fisher exact" in r["explanation"]
    assert "Internal Server Error" in r["explanation"]
    # the objective itself (50%) still passes: the regression is what catches it
    assert all(x["status"] == "pass" for x in report["results"] if x["kind"] == "objective")


def test_small_shift_is_not_significant_or_within_threshold(base: dict) -> None:
    report = run_check(SPEC, generate(N, seed=12, scale=1.05), base)
    r = [x for x in report["results"] if x["slo"] == "order-detail"
         and x["objective"] == "latency_regression"][0]
    assert r["status"] == "pass"
    assert ("Within the threshold" in r["explanation"]
            or "not significant" in r["explanation"]), r["explanation"]


def test_too_few_samples_is_said_plainly(base: dict) -> None:
    report = run_check(SPEC, generate(12, seed=13, scale=3.0), base)
    r = [x for x in report["results"] if x["slo"] == "order-detail"
         and x["objective"] == "latency_regression"][0]
    assert r["status"] == "pass" and r["p_value"] is None
    assert "too few samples" in r["explanation"]


def test_slo_missing_from_baseline_is_no_data(base: dict) -> None:
    partial = dict(base, slos={k: v for k, v in base["slos"].items() if k != "stock"})
    report = run_check(SPEC, generate(200, seed=14), partial)
    st = [r for r in report["results"] if r["slo"] == "stock" and r["kind"] == "regression"]
    assert st and all(r["status"] == "no_data" for r in st)
    assert "baseline has no samples" in st[0]["explanation"]
    assert report["verdict"] == "fail"


def test_baseline_recorded_with_another_selector_is_not_compared(base: dict) -> None:
    changed = json.loads(json.dumps(base))
    changed["slos"]["stock"]["select"]["span"] = "GET /stock/<id>"
    report = run_check(SPEC, generate(200, seed=15), changed)
    st = [r for r in report["results"] if r["slo"] == "stock" and r["kind"] == "regression"]
    assert st and all(r["status"] == "no_data" for r in st)
    assert "not comparable" in st[0]["explanation"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "corrupt JSON"),
        (b'{"version": 2, "kind": "slo-baseline", "slos": {}}', "unsupported baseline version 2"),
        (b'{"version": 1, "results": []}', "not an SLO baseline"),
        (b'{"version": 1, "slos": {"a": 3}}', "malformed baseline"),
        (gzip.compress(b"")[:5], "corrupt"),
    ],
)
def test_bad_baseline_files_are_one_line_errors(tmp_path: Path, content: bytes,
                                                needle: str) -> None:
    p = tmp_path / "b.json"
    p.write_bytes(content)
    with pytest.raises(BaselineError) as e:
        load_baseline(p)
    assert needle in str(e.value) and "\n" not in str(e.value) and str(p) in str(e.value)


def test_missing_baseline_file(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="baseline file not found"):
        load_baseline(tmp_path / "none.json")
