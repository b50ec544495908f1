"""`n_plus_one_http` in the real services: the order history asks product-service for each
product with its own call, and the `n_plus_one_http` detector names the route, the calls and
their total time. Spans go through the OTLP protobuf encoder and `slo.ingest.otlp` like the
collector's, so the detector sees what it would see in a run."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from slo.ingest import otlp
from slo.judge.detectors import run_detectors

ROUTE = "GET /products/<int:product_id>"


def _findings(spans) -> list[dict]:  # type: ignore[no-untyped-def]
    table = otlp.decode(encode_spans(spans).SerializeToString(), "application/x-protobuf").table
    return [f for f in run_detectors(table) if f["detector"] == "n_plus_one_http"]


def _user_with_products(stack, at_least: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    for user in range(1, 200):
        status, body, _ = stack.call("order-service", f"/users/{user}/orders")
        assert status == 200, body
        products = {i["product_id"] for o in body["orders"] for i in o["items"]}
        if len(products) >= at_least:
            assert all(i["name"] for o in body["orders"] for i in o["items"])
            return user, len(products)
    raise AssertionError("no seeded user with enough products")


def test_history_batches_without_the_bug(clean_stack) -> None:  # type: ignore[no-untyped-def]
    user, _ = _user_with_products(clean_stack, 6)
    status, body, spans = clean_stack.call("order-service", f"/users/{user}/orders")
    assert status == 200
    names = [s.name for s in spans if s.resource.attributes["service.name"] == "product-service"
             and s.kind.name == "SERVER"]
    assert names == ["GET /products/batch"]
    assert _findings(spans) == []


def test_n_plus_one_http_is_found(clean_stack) -> None:  # type: ignore[no-untyped-def]
    user, n = _user_with_products(clean_stack, 6)
    _, before, _ = clean_stack.call("order-service", f"/users/{user}/orders")
    clean_stack.set_bugs(["n_plus_one_http"])
    status, body, spans = clean_stack.call("order-service", f"/users/{user}/orders")
    assert status == 200 and body == before  # same answer, n calls instead of one
    found = _findings(spans)
    assert len(found) == 1, found
    f = found[0]
    assert (f["service"], f["span"], f["statement"], f["callee"]) == (
        "order-service", "GET /users/<int:user_id>/orders", ROUTE, "product-service")
    assert f["count"] == n and len(f["calls"]) == n and f["fails"]
    assert all("/products/" in c["url"] for c in f["calls"])
    offsets = [c["offset_ms"] for c in f["calls"]]
    assert offsets == sorted(offsets) and f["total_ms"] > 0
    assert f["message"].startswith(f"order-service called product-service `{ROUTE}` {n} times "
                                   "one after another under `GET /users/<int:user_id>/orders`")
