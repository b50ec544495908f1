"""Synthetic but realistic span tables shaped like the SUT's traces, for tests and benches.

Five services as in DESIGN.md: `GET /orders/<int:order_id>` on order-service reads the order,
then calls user, product, inventory and promotion services (in parallel unless the
`serial_fanout` bug is on); product list, stock look-ups, user reads and sign-ups are also
requested on their own. Every SUT bug has a generator counterpart so detectors and
regressions can be tested without starting the services:

missing_index (inventory SELECT ~40 ms), n_plus_one (one category query per product),
cache_bypass (inventory never hits its cache), slow_downstream (promotion +300 ms),
serial_fanout (order-service calls downstream one after another), error_burst (user-service
fails 20%), broken_propagation (the call to inventory loses its trace context).

Randomness comes from one seeded `random.Random`, so a table is a pure function of its args.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from slo.ingest.spans import STATUS_ERROR, STATUS_UNSET, make_row, table_from_rows

BUGS = ("missing_index", "n_plus_one", "cache_bypass", "slow_downstream", "serial_fanout",
        "error_burst", "broken_propagation")

ORDER = "GET /orders/<int:order_id>"
USER = "GET /users/<int:user_id>"
USER_POST = "POST /users"
PRODUCTS = "GET /products"
BATCH = "GET /products/batch"
STOCK = "GET /stock"
DISCOUNTS = "GET /discounts"
PORTS = {"order-service": 8080, "user-service": 8081, "product-service": 8082,
         "inventory-service": 8083, "promotion-service": 8084}


@dataclass
class Node:
    service: str
    name: str
    kind: str
    self_ms: float
    children: list[Node] = field(default_factory=list)
    parallel: bool = False  # children after the first `serial_prefix` run concurrently
    serial_prefix: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    error: bool = False
    http_status: int = 0
    broken: bool = False  # this subtree starts a new trace (lost context)


class Gen:
    def __init__(self, seed: int, bugs: set[str], scale: float, extra_ms: dict[str, float],
                 repeated: dict[str, int], error_rate: float):
        self.rng = random.Random(seed)
        self.bugs = bugs
        self.scale = scale
        self.extra_ms = extra_ms
        self.repeated = repeated
        self.error_rate = error_rate

    def ms(self, median: float) -> float:
        return median * self.scale * self.rng.lognormvariate(0.0, 0.25)

    def db(self, service: str, statement: str, median: float, system: str = "sqlite") -> Node:
        verb = statement.split()[0].upper()
        return Node(service, verb, "client", self.ms(median),
                    attributes={"db.system": system, "db.statement": statement})

    def server(self, service: str, name: str, route: str, method: str, self_ms: float,
               children: list[Node], *, error: bool = False) -> Node:
        status = 500 if error else 200
        path = re.sub(r"<int:\w+>", lambda _: str(self.rng.randint(1, 999)), route)
        return Node(service, name, "server", self.ms(self_ms) + self.extra_ms.get(name, 0.0),
                    children, attributes={"http.route": route, "http.request.method": method,
                                          "http.response.status_code": status,
                                          "url.path": path, "server.port": PORTS[service]},
                    error=error, http_status=status)

    def client(self, service: str, target: Node, method: str = "GET") -> Node:
        port = PORTS[target.service]
        url = f"http://127.0.0.1:{port}{target.attributes.get('url.path', '/')}"
        return Node(service, method, "client", self.ms(0.3), [target],
                    attributes={"http.request.method": method,
                                "http.response.status_code": target.http_status,
                                "url.full": url, "server.address": "127.0.0.1",
                                "server.port": port},
                    http_status=target.http_status)

    # -- requests ------------------------------------------------------------------------

    def user(self) -> Node:
        uid = self.rng.randint(1, 5000)
        error = ("error_burst" in self.bugs and self.rng.random() < 0.2) or \
            self.rng.random() < self.error_rate
        q = self.db("user-service", f"SELECT id, name, email FROM users WHERE id = {uid}", 0.4)
        route = "/users/<int:user_id>"
        return self.server("user-service", USER, route, "GET", 1.0, [q], error=error)

    def user_post(self) -> Node:
        n = self.rng.randint(1, 10**6)
        q = self.db("user-service", f"INSERT INTO users (name, email) VALUES ('u{n}', "
                    f"'u{n}@example.com')", 0.8)
        return self.server("user-service", USER_POST, "/users", "POST", 1.2, [q])

    def products(self) -> Node:
        kids = [self.db("product-service", "SELECT id, name, category_id FROM products "
                        "ORDER BY id LIMIT 20", 0.6)]
        if "n_plus_one" in self.bugs:
            for _ in range(20):
                c = self.rng.randint(1, 50)
                kids.append(self.db("product-service",
                                    f"SELECT name FROM categories WHERE id = {c}", 0.25))
        else:
            kids.append(self.db("product-service", "SELECT id, name FROM categories WHERE id "
                                "IN (1, 2, 3, 4, 5)", 0.3))
        for stmt, times in self.repeated.items():
            for i in range(times):
                kids.append(self.db("product-service", stmt.replace("?", str(i + 1)), 0.2))
        return self.server("product-service", PRODUCTS, "/products", "GET", 1.0, kids)

    def batch(self) -> Node:
        ids = ", ".join(str(self.rng.randint(1, 2000)) for _ in range(self.rng.randint(1, 5)))
        q = self.db("product-service", f"SELECT id, name, price FROM products WHERE id IN "
                    f"({ids})", 0.5)
        return self.server("product-service", BATCH, "/products/batch", "GET", 0.8, [q])

    def stock(self) -> Node:
        kids: list[Node] = []
        pid = self.rng.randint(1, 2000)
        hit = "cache_bypass" not in self.bugs and self.rng.random() < 0.9
        if not hit:
            median = 40.0 if "missing_index" in self.bugs else 0.3
            kids.append(self.db("inventory-service", f"SELECT product_id, quantity FROM "
                                f"inventory WHERE product_id IN ({pid})", median))
        return self.server("inventory-service", STOCK, "/stock", "GET", 0.6, kids)

    def discounts(self) -> Node:
        q = self.db("promotion-service", "SELECT code, percent FROM discounts WHERE "
                    "active = 1", 0.4)
        node = self.server("promotion-service", DISCOUNTS, "/discounts", "GET", 0.8, [q])
        if "slow_downstream" in self.bugs:
            node.self_ms += 300.0 * self.rng.lognormvariate(0.0, 0.05)
        return node

    def order(self) -> Node:
        oid = self.rng.randint(1, 10000)
        q = self.db("order-service", f"SELECT id, user_id, created_at FROM orders WHERE "
                    f"id = {oid}", 0.5)
        calls = [self.client("order-service", self.user()),
                 self.client("order-service", self.batch()),
                 self.client("order-service", self.stock()),
                 self.client("order-service", self.discounts())]
        if "broken_propagation" in self.bugs:
            calls[2].children[0].broken = True
        error = calls[0].http_status >= 500
        route = "/orders/<int:order_id>"
        node = self.server("order-service", ORDER, route, "GET", 1.0, [q, *calls], error=error)
        node.parallel, node.serial_prefix = "serial_fanout" not in self.bugs, 1
        return node


def _emit(node: Node, gen: Gen, trace_id: str, parent: str, start_ns: int, run_id: str,
          rows: list[dict[str, Any]], new_trace) -> int:
    """Append rows for `node` starting at start_ns; returns its end (ns)."""
    span_id = f"{gen.rng.getrandbits(64):016x}"
    if node.broken:
        trace_id, parent = new_trace(), ""
    pre = int(node.self_ms * 0.5e6)
    t = start_ns + pre
    end_children = t
    for i, child in enumerate(node.children):
        child_end = _emit(child, gen, trace_id, span_id, t, run_id, rows, new_trace)
        end_children = max(end_children, child_end)
        if not node.parallel or i < node.serial_prefix:
            t = child_end + int(gen.rng.uniform(0.01, 0.05) * 1e6)
        else:
            t += int(0.05e6)  # threads start a little apart
    end = max(end_children, t) + int(node.self_ms * 0.5e6)
    attrs = dict(node.attributes, **{"slo.run_id": run_id} if run_id else {})
    rows.append(make_row(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=node.name,
        start_ns=start_ns, end_ns=end, kind=node.kind,
        status_code=STATUS_ERROR if node.error else STATUS_UNSET,
        status_message="Internal Server Error" if node.error else "",
        attributes=attrs, resource={"service.name": node.service}, run_id=run_id))
    return end


def generate_rows(n: int = 200, *, seed: int = 0, run_id: str = "run-a",
                  bugs: tuple[str, ...] | list[str] = (), scale: float = 1.0,
                  extra_ms: dict[str, float] | None = None,
                  repeated: dict[str, int] | None = None, error_rate: float = 0.0,
                  start_ns: int = 1_767_225_600_000_000_000,
                  mix: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Span rows of `n` requests; `mix` weighs request types (default: orders dominate).

    scale multiplies every duration, extra_ms adds self time to the server span of that name,
    repeated adds `{statement: times}` queries to the product list, error_rate fails that
    share of user-service requests on top of the error_burst bug.
    """
    unknown = set(bugs) - set(BUGS)
    if unknown:
        raise ValueError(f"unknown bugs {sorted(unknown)}")
    gen = Gen(seed, set(bugs), scale, extra_ms or {}, repeated or {}, error_rate)
    mix = mix or {"order": 0.5, "products": 0.15, "stock": 0.15, "user": 0.1,
                  "user_post": 0.05, "discounts": 0.05}
    kinds, weights = list(mix), list(mix.values())
    rows: list[dict[str, Any]] = []

    def new_trace() -> str:
        return f"{gen.rng.getrandbits(128):032x}"

    t = start_ns
    for _ in range(n):
        kind = gen.rng.choices(kinds, weights)[0]
        root = getattr(gen, kind)()
        _emit(root, gen, new_trace(), "", t, run_id, rows, new_trace)
        t += int(gen.rng.uniform(1, 10) * 1e6)
    return rows


def generate(n: int = 200, **kwargs: Any) -> pa.Table:
    """`generate_rows` as a span table."""
    return table_from_rows(generate_rows(n, **kwargs))


_KIND_NUMBERS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}


def _any_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def to_otlp_json(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows as one OTLP/JSON ExportTraceServiceRequest (hex ids, as the file exporter writes)."""
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_resource.setdefault(r["resource"], []).append(r)
    out = []
    for resource, spans in by_resource.items():
        res = json.loads(resource)
        out.append({
            "resource": {"attributes": [{"key": k, "value": _any_value(v)}
                                        for k, v in res.items()]},
            "scopeSpans": [{"scope": {"name": "spangen"}, "spans": [{
                "traceId": r["trace_id"], "spanId": r["span_id"],
                "parentSpanId": r["parent_span_id"], "name": r["name"],
                "kind": _KIND_NUMBERS.get(r["kind"], 0),
                "startTimeUnixNano": str(r["start_ns"]), "endTimeUnixNano": str(r["end_ns"]),
                "attributes": [{"key": k, "value": _any_value(v)}
                               for k, v in json.loads(r["attributes"]).items()],
                "status": {"code": r["status_code"], "message": r["status_message"]},
            } for r in spans]}],
        })
    return {"resourceSpans": out}
