"""Each bug, switched on, changes what the traces show; with no bug, none of these.

Spans are captured in process (InMemorySpanExporter) from the five real services talking over
real sockets. Checks are on span shapes, counts, plans and large ratios, not on tight timings."""

from __future__ import annotations

import statistics

from opentelemetry.trace import SpanKind, StatusCode
from sut_helpers import overlaps

from sut import db
from sut.seed import HOT_PRODUCTS


def service(span) -> str:  # type: ignore[no-untyped-def]
    return span.resource.attributes["service.name"]


def db_spans(spans, svc: str) -> list:  # type: ignore[no-untyped-def]
    return [s for s in spans if service(s) == svc and "db.system" in s.attributes]


def server(spans, svc: str):  # type: ignore[no-untyped-def]
    found = [s for s in spans if service(s) == svc and s.kind == SpanKind.SERVER]
    assert found, f"no server span of {svc}"
    return found[-1]


def fanout_clients(spans) -> list:  # type: ignore[no-untyped-def]
    return [s for s in spans if service(s) == "order-service" and s.kind == SpanKind.CLIENT
            and "db.system" not in s.attributes]


def test_order_trace_without_bugs(clean_stack) -> None:  # type: ignore[no-untyped-def]
    status, body, spans = clean_stack.call("order-service", "/orders/7",
                                           headers={"baggage": "slo.run_id=run-42"})
    assert status == 200, body
    assert body["id"] == 7 and body["items"] and body["user"]["id"]
    order = server(spans, "order-service")
    assert order.name == "GET /orders/<int:order_id>"
    assert order.attributes["http.route"] == "/orders/<int:order_id>"
    # one trace across all five services, every span carrying the run id from the baggage
    assert {service(s) for s in spans} == {"order-service", "user-service", "product-service",
                                         "inventory-service", "promotion-service"}
    assert {s.context.trace_id for s in spans} == {order.context.trace_id}
    assert all(s.attributes.get("slo.run_id") == "run-42" for s in spans)
    # parallel fan-out: four client calls, and they overlap in time
    clients = fanout_clients(spans)
    assert len(clients) == 4
    windows = [(s.start_time, s.end_time) for s in clients]
    assert any(overlaps(a, b) for i, a in enumerate(windows) for b in windows[i + 1:])
    for svc in ("user-service", "product-service", "inventory-service", "promotion-service"):
        srv = server(spans, svc)
        assert srv.parent.span_id in {c.context.span_id for c in clients}
    # DB spans carry both the old and the stable semantic-convention names
    q = db_spans(spans, "order-service")[0]
    assert q.attributes["db.system"] == "sqlite" and q.attributes["db.system.name"] == "sqlite"
    assert q.attributes["db.statement"].startswith("SELECT")
    assert q.attributes["db.query.text"] == q.attributes["db.statement"]
    assert order.status.status_code != StatusCode.ERROR


def test_n_plus_one(clean_stack) -> None:  # type: ignore[no-untyped-def]
    status, body, spans = clean_stack.call("product-service", "/products")
    assert status == 200 and len(body["products"]) == 20
    assert body["products"][0]["category"]["name"].startswith("Category")
    assert len(db_spans(spans, "product-service")) <= 2
    clean_stack.set_bugs(["n_plus_one"])
    status, buggy, spans = clean_stack.call("product-service", "/products")
    assert status == 200 and buggy == body  # same answer, many more queries
    queries = db_spans(spans, "product-service")
    assert len(queries) >= 21
    stmts = [q.attributes["db.statement"] for q in queries]
    assert stmts.count("SELECT id, name FROM categories WHERE id = ?") == 20
    # the queries run one after another under the manual span
    manual = [s for s in spans if s.name == "load products with categories"][0]
    assert all(q.parent.span_id == manual.context.span_id for q in queries)


def stock_query_ms(stack, ids: str, n: int = 5) -> float:  # type: ignore[no-untyped-def]
    durations = []
    for _ in range(n):
        stack.svc("inventory-service").cache.clear()
        status, _, spans = stack.call("inventory-service", f"/stock?product_ids={ids}")
        assert status == 200
        (query,) = db_spans(spans, "inventory-service")
        assert "FROM inventory" in query.attributes["db.statement"]
        durations.append((query.end_time - query.start_time) / 1e6)
    return statistics.median(durations)


def test_missing_index(clean_stack) -> None:  # type: ignore[no-untyped-def]
    url = clean_stack.settings.db_url
    assert "USING INDEX idx_inventory_product" in db.stock_plan(url, [3, 4000])
    fast = stock_query_ms(clean_stack, "3,4000")
    clean_stack.set_bugs(["missing_index"])
    assert not db.inventory_index_present(url)
    plan = db.stock_plan(url, [3, 4000])
    assert "SCAN inventory" in plan and "USING INDEX" not in plan
    slow = stock_query_ms(clean_stack, "3,4000")
    assert slow > 3 * fast and slow > 2.0, (fast, slow)
    clean_stack.set_bugs([])
    assert db.inventory_index_present(url)
    assert "USING INDEX idx_inventory_product" in db.stock_plan(url, [3, 4000])


def test_cache_bypass(clean_stack) -> None:  # type: ignore[no-untyped-def]
    ids = ",".join(str(p) for p in list(HOT_PRODUCTS)[:5])
    clean_stack.svc("inventory-service").cache.clear()
    _, first, spans = clean_stack.call("inventory-service", f"/stock?product_ids={ids}")
    assert len(db_spans(spans, "inventory-service")) == 1
    _, second, spans = clean_stack.call("inventory-service", f"/stock?product_ids={ids}")
    assert second["stock"] == first["stock"] and second["cached"] == 5
    assert db_spans(spans, "inventory-service") == []
    (lookup,) = [s for s in spans if s.name == "cache.get"]
    assert lookup.attributes["cache.hit"] is True
    clean_stack.set_bugs(["cache_bypass"])
    for _ in range(2):
        _, third, spans = clean_stack.call("inventory-service", f"/stock?product_ids={ids}")
        assert third["stock"] == first["stock"]
        assert len(db_spans(spans, "inventory-service")) == 1
        (lookup,) = [s for s in spans if s.name == "cache.get"]
        assert lookup.attributes["cache.hit"] is False


def test_slow_downstream(clean_stack) -> None:  # type: ignore[no-untyped-def]
    _, _, spans = clean_stack.call("promotion-service", "/discounts?product_ids=1,2&user_id=10")
    assert "promotion.slow" not in server(spans, "promotion-service").attributes
    clean_stack.set_bugs(["slow_downstream"])
    status, _, spans = clean_stack.call("order-service", "/orders/11")
    assert status == 200
    promo = server(spans, "promotion-service")
    assert (promo.end_time - promo.start_time) / 1e6 >= 300
    order = server(spans, "order-service")
    assert (order.end_time - order.start_time) / 1e6 >= 300


def test_serial_fanout(clean_stack) -> None:  # type: ignore[no-untyped-def]
    clean_stack.set_bugs(["serial_fanout"])
    status, _, spans = clean_stack.call("order-service", "/orders/12")
    assert status == 200
    clients = sorted(fanout_clients(spans), key=lambda s: s.start_time)
    assert len(clients) == 4
    for a, b in zip(clients, clients[1:], strict=False):
        assert a.end_time <= b.start_time  # strictly one after another
    assert server(spans, "order-service").attributes["order.fanout"] == "serial"


def test_error_burst(clean_stack) -> None:  # type: ignore[no-untyped-def]
    from sut_helpers import http

    url = clean_stack.urls["user-service"] + "/users/1"
    assert all(http("GET", url)[0] == 200 for _ in range(20))
    clean_stack.set_bugs(["error_burst"])
    codes = [http("GET", url)[0] for _ in range(100)]
    assert set(codes) <= {200, 500}
    assert 5 <= codes.count(500) <= 45  # about 20%; binomial bounds far beyond 4 sigma
    for order_id in range(1, 200):
        status, body, spans = clean_stack.call("order-service", f"/orders/{order_id}")
        if status != 200:
            break
    assert status == 502 and "user-service answered 500" in body["error"]
    assert server(spans, "order-service").status.status_code == StatusCode.ERROR
    user = server(spans, "user-service")
    assert user.status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" for e in user.events)


def test_broken_propagation(clean_stack) -> None:  # type: ignore[no-untyped-def]
    clean_stack.set_bugs(["broken_propagation"])
    status, _, spans = clean_stack.call("order-service", "/orders/13",
                                        headers={"baggage": "slo.run_id=run-7"})
    assert status == 200
    order = server(spans, "order-service")
    promo = server(spans, "promotion-service")
    assert promo.context.trace_id != order.context.trace_id
    assert promo.parent is None  # a new root: the trace broke in two
    assert promo.attributes.get("slo.run_id") == "run-7"  # baggage still travelled
    for svc in ("user-service", "product-service", "inventory-service"):
        assert server(spans, svc).context.trace_id == order.context.trace_id
    assert len(fanout_clients(spans)) == 4  # the client span is there, its context was not sent
