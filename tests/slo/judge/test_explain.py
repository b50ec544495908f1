"""Latency attribution by critical self time, culprits and count explanations."""

from __future__ import annotations

import random

import pytest

from slo.judge.explain import (
    attribute_latency,
    culprit,
    describe,
    explain_counts,
    group_of,
    profile,
)


def sp(sid, parent, service, name, start, dur, sql=None):
    attrs = {"db.statement": sql} if sql else {}
    return {"span_id": sid, "parent_span_id": parent, "service": service, "name": name,
            "kind": "client" if sql else "server", "start_ms": start, "duration_ms": dur,
            "status": "unset", "attributes": attrs}


def order_trace(i: int, stock_ms: float, promo_ms: float = 3.0, repeats: int = 1) -> dict:
    """order -> (user, inventory, promotion) in parallel; inventory runs a stock query."""
    spans = [
        sp("root", "", "order-service", "GET /orders/<int:order_id>", 0, 0),
        sp("c1", "root", "order-service", "GET", 1, 4),
        sp("u", "c1", "user-service", "GET /users/<int:id>", 1.2, 3.5),
        sp("c2", "root", "order-service", "GET", 1, stock_ms + 2 + repeats * 0.2),
        sp("inv", "c2", "inventory-service", "GET /stock", 1.2, stock_ms + 1.5 + repeats * 0.2),
        sp("q", "inv", "inventory-service", "SELECT", 1.5, stock_ms,
           f"SELECT qty FROM inventory WHERE product_id IN ({i}, {i + 1})"),
        sp("c3", "root", "order-service", "GET", 1, promo_ms + 0.5),
        sp("p", "c3", "promotion-service", "GET /discounts", 1.2, promo_ms),
    ]
    for k in range(repeats - 1):
        spans.append(sp(f"r{k}", "inv", "inventory-service", "SELECT", 1.5 + stock_ms + k * 0.2, 0.15,
                        f"SELECT name FROM categories WHERE id = {k}"))
    end = max(s["start_ms"] + s["duration_ms"] for s in spans)
    spans[0]["duration_ms"] = end + 1
    return {"trace_id": f"{i:032x}", "spans": spans}


def runs(stock_ms: float, n: int = 40, seed: int = 1, **kw) -> list[dict]:
    rng = random.Random(seed)
    return [order_trace(i, stock_ms * rng.uniform(0.9, 1.1), **kw) for i in range(n)]


def test_group_of_normalizes_statements():
    q = sp("q", "x", "inventory-service", "SELECT", 0, 1, "select qty from inventory where product_id in (1,2,3)")
    assert group_of(q) == ("inventory-service", "SELECT", "select qty from inventory where product_id in (?)")
    assert group_of(sp("a", "", "s", "GET /x", 0, 1)) == ("s", "GET /x", None)


def test_slower_statement_gets_the_added_time():
    contributions = attribute_latency(runs(0.3), runs(40, seed=2))
    top = contributions[0]
    assert top["service"] == "inventory-service"
    assert top["statement"] == "SELECT qty FROM inventory WHERE product_id IN (?)"
    assert top["baseline_ms"] == pytest.approx(0.3, rel=0.15)
    assert top["candidate_ms"] == pytest.approx(40, rel=0.15)
    assert top["share"] > 0.9
    assert sum(c["share"] for c in contributions) <= 1.0 + 1e-6
    text = describe(contributions)
    assert text.startswith("inventory-service `SELECT qty FROM inventory WHERE product_id IN (?)`: p50 0.3")
    assert "about 9" in text and "% of the added time" in text


def test_off_critical_path_slowdown_is_not_blamed():
    # Promotion gets slower but stays shorter than the inventory branch: no user-visible cost.
    base = runs(30, promo_ms=3)
    cand = runs(30, promo_ms=20, seed=1)
    assert all(c["service"] != "promotion-service" for c in attribute_latency(base, cand))
    # ...and once it is the slowest branch it is blamed.
    cand = runs(30, promo_ms=80, seed=1)
    assert attribute_latency(base, cand)[0]["service"] == "promotion-service"


def test_no_change_means_no_contributions():
    same = runs(5)
    assert attribute_latency(same, same) == []
    assert "No span group" in describe([])


def test_profile_is_json_ready():
    import json
    p = profile(runs(1, n=5))
    json.loads(json.dumps(p))
    assert p["traces"] == 5 and p["groups"]


def test_culprit_is_the_largest_critical_self_time():
    t = order_trace(1, 40)
    assert culprit(t) == "q"
    assert culprit({"spans": []}) is None


def test_explain_counts_names_the_repeating_statement():
    base = [order_trace(i, 1, repeats=1) for i in range(10)]
    cand = [order_trace(i, 1, repeats=21) for i in range(10)]
    text = explain_counts(base, cand)
    assert text.startswith("inventory-service `SELECT name FROM categories WHERE id = ?` now runs 20 times per request")
    assert "baseline 0" in text
    assert "p50 1 -> 21" in text
    assert explain_counts(base, base).startswith("No statement")


def test_culprit_is_not_the_load_generators_wire_time():
    spans = [
        sp("lc", "", "locust", "GET /products", 0, 30),
        sp("srv", "lc", "product-service", "GET /products", 12, 10),
        sp("q", "srv", "product-service", "SELECT", 13, 6, "SELECT * FROM products"),
    ]
    spans[0]["kind"] = "client"
    t = {"trace_id": "t", "spans": spans}
    assert culprit(t) == "q"  # locust has 20 ms outside its child, the query 6 ms
    # A client call whose callee never reported (no server child) is still blamed.
    broken = {"trace_id": "u", "spans": [sp("root", "", "order-service", "GET /orders", 0, 30),
                                         dict(sp("c", "root", "order-service", "GET", 2, 25), kind="client")]}
    assert culprit(broken) == "c"


def test_statement_that_now_runs_more_often_and_slower_is_described_per_run():
    def trace(i, query_ms):
        spans = [sp("root", "", "inventory-service", "GET /stock", 0, 0)]
        if query_ms:
            spans.append(sp("q", "root", "inventory-service", "SELECT", 0.5, query_ms,
                            "SELECT qty FROM inventory WHERE product_id IN (1)"))
        spans[0]["duration_ms"] = 1 + query_ms
        return {"trace_id": f"{i:032x}", "spans": spans}

    base = [trace(i, 0.3 if i % 5 < 2 else 0) for i in range(50)]  # cache hit 60% of the time
    cand = [trace(i, 140.0) for i in range(50)]  # cache bypassed, table scanned
    top = attribute_latency(base, cand)[0]
    assert top["baseline_ms"] == 0.0  # absent from most baseline requests
    assert top["baseline_span_ms"] == pytest.approx(0.3) and top["candidate_span_ms"] == pytest.approx(140)
    text = describe([top])
    assert "p50 0.3 ms -> 140 ms per run, 0.4 -> 1 runs per request" in text


def test_describe_accepts_contributions_without_span_fields():
    item = {"service": "s", "span": "GET /x", "statement": None, "baseline_ms": 1.0,
            "candidate_ms": 9.0, "share": 0.8}
    assert describe([item]) == "s `GET /x`: p50 1.00 ms -> 9.00 ms, about 80% of the added time."


def test_statements_spelled_in_other_case_are_one_statement_across_runs() -> None:
    """The baseline's release wrote `SELECT`, the candidate's `select`: one statement that now
    runs more often, not a new one (the attribution profile groups them too)."""
    from slo.judge.explain import explain_counts, profile

    def trace(tid: str, sql: str, n: int) -> dict:
        root = {"span_id": f"{tid}r", "parent_span_id": None, "service": "svc", "name": "GET /x",
                "start_ns": 0, "end_ns": 10_000_000, "attributes": {}}
        spans = [root] + [
            {"span_id": f"{tid}{i}", "parent_span_id": f"{tid}r", "service": "svc",
             "name": "SELECT", "start_ns": 1_000_000 + i * 100_000,
             "end_ns": 1_050_000 + i * 100_000, "attributes": {"db.statement": sql}}
            for i in range(n)]
        return {"trace_id": tid, "spans": spans}

    base = [trace(f"b{i}", "SELECT id FROM Items WHERE id = 1", 1) for i in range(3)]
    cand = [trace(f"c{i}", "select id from Items where id = 2", 5) for i in range(3)]
    text = explain_counts(base, cand)
    assert "now runs 5 times per request" in text and "baseline 1" in text, text
    assert "select id from Items" in text  # shown as written
    groups = [set(profile(t)["groups"]) for t in (base, cand)]
    assert groups[0] == groups[1]


def test_statement_changes_match_the_baselines_spelling() -> None:
    """A saved baseline labels a statement `SELECT ...`; this run's label is `select ...`."""
    from types import SimpleNamespace

    from slo.judge.causes import statement_changes

    ev = SimpleNamespace(counts=SimpleNamespace(per_statement={
        "select id from Items where id = ?": {"mean": 5.0, "max": 5, "service": "svc"}}))
    base = {"statements": {"SELECT id FROM Items WHERE id = ?": {"mean": 1.0, "max": 1}}}
    text = statement_changes(ev, base)  # type: ignore[arg-type]
    assert "now runs 5.00 times per request, max 5 (baseline 1.00, max 1)" in text, text
