"""`slo gate` on PostgreSQL and Redis, run with the compose file's own `gate` command.

`docker compose run --rm gate` runs `slo gate --db postgresql://... --cache redis://...`,
configured by SLO_GATE_* variables. Here the same command runs on this machine against its
PostgreSQL (database `test`, a schema of this test's own) and Redis (database 13, emptied
before each run):
  * no bug: the gate passes, and the traces it kept show PostgreSQL and Redis spans;
  * missing_index, n_plus_one, cache_bypass: each fails it, and the report says why in the
    terms of that bug (the inventory scan, the categories loop, the stock query the cache
    used to answer).
The bug runs compare against the baseline the passing run saved (SLO_GATE_BASELINE), which
is how a team would keep one baseline per branch, and halves their cost. Each run starts on an
emptied Redis database, as the in-process cache starts empty.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import stack_harness as harness

pytestmark = pytest.mark.e2e

SCHEMA = "slo_e2e_stack"
REDIS_URL = f"{harness.REDIS_BASE}/13"  # this module's own Redis database, flushed per run
GATE_LOAD = {"SLO_GATE_DURATION": "4", "SLO_GATE_SLICE": "2", "SLO_GATE_USERS": "8"}


def spec_for(workdir: Path) -> Path:
    """The gate's embedded spec with serial_fanout reported, not failing (thread timing alone
    can trip it on a busy box). Objectives, budgets, alpha and the other detectors stay as
    shipped: the no-bug gate used to need alpha 0.0005, because request-level tests took the
    busy box's bursts (longer than a slice) for a +40% median at p = 0.002-0.004; the slice
    pairs it is judged by now see those bursts on both sides (issue 11)."""
    import yaml

    from slo.gate import embedded_spec_path

    spec = yaml.safe_load(Path(embedded_spec_path()).read_text())
    spec.setdefault("detectors", {})["serial_fanout"] = {"fail": False}
    path = workdir / "slo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_gate(workdir: Path, **env: str) -> tuple[int, dict[str, Any], str]:
    """The compose `gate` service's command, with GATE_LOAD and `env` added (env wins);
    (exit code, report, output)."""
    env.setdefault("SLO_GATE_SPEC", str(spec_for(workdir)))
    # A cold cache for every run, as the in-process cache is: stock cached in Redis by an
    # earlier run would hide `missing_index` (only cache misses reach the inventory table).
    redis.Redis.from_url(REDIS_URL).flushdb()
    stack = harness.HostStack(workdir, db_url=harness.pg_url(SCHEMA), cache_url=REDIS_URL)
    argv, base_env = stack.command("gate")
    assert argv[1:3] == ["gate", "--db"] and "--cache" in argv
    full = {k: v for k, v in harness.os.environ.items() if not k.startswith(harness.compose.PREFIXES)}
    full.update(base_env)
    full.update(GATE_LOAD)
    full.update(env)
    proc = subprocess.run(argv, cwd=harness.ROOT, env=full, capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    report_path = workdir / "data" / "reports" / "slo-report.json"
    assert report_path.is_file(), f"exit {proc.returncode}, no report:\n{out[-4000:]}"
    return proc.returncode, json.loads(report_path.read_text()), out


def _failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["results"] if r["status"] == "fail"]


def _top_contribution(result: dict[str, Any]) -> dict[str, Any]:
    contribs = result.get("contributions") or []
    return max(contribs, key=lambda c: c.get("share") or 0) if contribs else {}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The no-bug gate: it must pass; its saved baseline serves the bug runs."""
    workdir = tmp_path_factory.mktemp("gate-nobug")
    # More, shorter interleaved slices than the bug runs: the two sides then share the noise
    # of a busy machine more evenly, and a pass does not hinge on one unlucky slice.
    code, report, out = run_gate(workdir, SLO_GATE_DURATION="6", SLO_GATE_SLICE="1",
                                 SLO_GATE_SPEC=str(spec_for(workdir)))
    lat = [r for r in report["results"] if r["objective"] == "latency_regression"
           and r["slo"] == "order-detail"]
    assert lat and lat[0]["method"].startswith("slice pairs"), lat
    assert code == 0 and report["verdict"] == "pass", f"exit {code}:\n{out[-4000:]}"
    systems = {
        (s["attributes"].get("db.system.name") or s["attributes"].get("db.system"))
        for t in report["traces"].values() for s in t["spans"]
    }
    assert {"postgresql", "redis"} <= systems and "sqlite" not in systems, systems
    path = workdir / "data" / "reports" / "baseline.json"
    assert path.is_file()
    return path


def test_no_bug_passes_on_postgres_and_redis(baseline: Path) -> None:
    assert json.loads(baseline.read_text())["version"] == 1


def _explains_missing_index(report: dict[str, Any]) -> None:
    hits = [
        r for r in _failed(report)
        if r["objective"].startswith("latency") and r["slo"] in ("stock", "stock-query", "order-detail")
        and _top_contribution(r).get("service") == "inventory-service"
        and "FROM INVENTORY" in (_top_contribution(r).get("statement") or "").upper()
    ]
    assert hits, [(r["slo"], r["objective"], _top_contribution(r)) for r in _failed(report)]


def _explains_n_plus_one(report: dict[str, Any]) -> None:
    hits = [
        r for r in _failed(report)
        if r["slo"] == "product-list" and r["objective"].startswith(("repeated_queries", "db_queries"))
        and "CATEGORIES" in r["explanation"].upper()
    ]
    assert hits, [(r["slo"], r["objective"], r["explanation"]) for r in _failed(report)]
    assert any(
        f["detector"] == "n_plus_one" and f["service"] == "product-service" and f.get("fails")
        and "CATEGORIES" in (f.get("statement") or "").upper()
        for f in report["findings"]
    ), report["findings"]


def _explains_cache_bypass(report: dict[str, Any]) -> None:
    hits = [
        r for r in _failed(report)
        if r["objective"].startswith("db_queries") and r["slo"] in ("stock", "order-detail")
        and "inventory-service" in r["explanation"] and "INVENTORY" in r["explanation"].upper()
    ]
    assert hits, [(r["slo"], r["objective"], r["explanation"]) for r in _failed(report)]
    assert not any(f["detector"] == "n_plus_one" for f in report["findings"])


@pytest.mark.parametrize(
    ("bug", "seconds", "explains"),
    [
        # Behind the warm cache only misses scan the table: ~10% of stock look-ups, which
        # takes 100+ samples a side to show (the p90 test needs them); 4 s give ~90.
        ("missing_index", "10", _explains_missing_index),
        ("n_plus_one", "4", _explains_n_plus_one),
        ("cache_bypass", "4", _explains_cache_bypass),
    ],
)
def test_each_bug_fails_the_gate_with_its_explanation(
    bug: str, seconds: str, explains: Any, baseline: Path, tmp_path: Path
) -> None:
    code, report, out = run_gate(tmp_path, SLO_GATE_BUGS=bug, SLO_GATE_BASELINE=str(baseline),
                                 SLO_GATE_DURATION=seconds)
    regressions = [
        (r["slo"], r["objective"], r["observed"], r["baseline"], r["status"])
        for r in report["results"] if r["objective"].endswith("_regression")
    ]
    assert code == 1 and report["verdict"] == "fail", f"exit {code}:\n{out[-3000:]}\n{regressions}"
    assert report["baseline_run_id"], "the saved baseline was not used"
    assert report["gate"]["bugs"] == [bug]
    explains(report)
