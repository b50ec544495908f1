"""order-service: GET /orders/<id> reads the order and its items, then asks user, product,
inventory and promotion services, in parallel (a thread pool that carries the OTel context).

GET /users/<id>/orders lists a user's recent orders with their products' names, asking
product-service for all of them in one batch call.

Bugs: `serial_fanout` makes the four calls one after another; `broken_propagation` sends the
promotion call through a hand-rolled client that forwards only the baggage header, so its
server span starts a new trace; `error_burst` upstream turns into a 502 here;
`n_plus_one_http` makes the order history fetch each product with its own call
(`GET /products/<id>`, one after another) instead of the batch call."""

from __future__ import annotations

import contextvars
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask, jsonify
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.trace import SpanKind, Status, StatusCode

from sut import telemetry
from sut.db import placeholders
from sut.web import ApiError, Service, int_arg, mark_error


@dataclass
class Call:
    name: str
    service: str
    url: str
    params: dict[str, Any]


@dataclass
class Outcome:
    call: Call
    status: int
    body: Any
    error: str = ""


def register(app: Flask, svc: Service) -> None:
    telemetry.instrument_outbound_http(svc.tracer_provider)
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fanout")
    local = threading.local()
    timeout = svc.settings.http_timeout

    def session() -> requests.Session:
        s = getattr(local, "session", None)
        if s is None:
            s = local.session = requests.Session()
        return s

    def fetch(call: Call) -> Outcome:
        try:
            r = session().get(call.url, params=call.params, timeout=timeout)
        except requests.RequestException as e:
            return Outcome(call, 0, None, f"{call.service} unreachable: {type(e).__name__}")
        try:
            body = r.json()
        except ValueError:
            body = None
        err = "" if r.ok else f"{call.service} answered {r.status_code}"
        return Outcome(call, r.status_code, body, err)

    def fetch_without_context(call: Call) -> Outcome:
        """The broken_propagation path: own client span, but only baggage goes on the wire."""
        url = call.url + "?" + urllib.parse.urlencode(call.params)
        with svc.tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("http.method", "GET")
            span.set_attribute("url.full", url)
            span.set_attribute("http.url", url)
            headers: dict[str, str] = {}
            W3CBaggagePropagator().inject(headers)  # traceparent forgotten: the bug
            req = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    status, raw = resp.status, resp.read()
            except urllib.error.HTTPError as e:
                status, raw = e.code, e.read()
            except (urllib.error.URLError, OSError) as e:
                span.set_status(Status(StatusCode.ERROR, str(e)))
                return Outcome(call, 0, None, f"{call.service} unreachable: {type(e).__name__}")
            span.set_attribute("http.response.status_code", status)
            span.set_attribute("http.status_code", status)
            if status >= 400:
                span.set_status(Status(StatusCode.ERROR))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            return Outcome(call, status, body, "" if status < 400 else f"{call.service} answered {status}")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return order_detail(order_id)
        finally:
            svc.bugs.slow_down(started)  # cpu_regression / tail_regression: N% more work

    def order_detail(order_id: int):  # type: ignore[no-untyped-def]
        rows = svc.db.query("SELECT id, user_id, created_at FROM orders WHERE id = ?", (order_id,))
        if not rows:
            raise ApiError(404, f"order {order_id} not found")
        _, user_id, created_at = rows[0]
        items = svc.db.query(
            "SELECT product_id, quantity FROM order_items WHERE order_id = ? ORDER BY product_id",
            (order_id,))
        ids = ",".join(str(pid) for pid, _ in items)
        urls = svc.settings.urls
        calls = [
            Call("user", "user-service", f"{urls['user-service']}/users/{user_id}", {}),
            Call("products", "product-service", f"{urls['product-service']}/products/batch", {"ids": ids}),
            Call("stock", "inventory-service", f"{urls['inventory-service']}/stock", {"product_ids": ids}),
            Call("discounts", "promotion-service", f"{urls['promotion-service']}/discounts",
                 {"product_ids": ids, "user_id": user_id}),
        ]
        broken = svc.bugs.enabled("broken_propagation")

        def run(call: Call) -> Outcome:
            if broken and call.name == "discounts":
                return fetch_without_context(call)
            return fetch(call)

        span = trace.get_current_span()
        if svc.bugs.enabled("serial_fanout"):
            span.set_attribute("order.fanout", "serial")
            outcomes = [run(c) for c in calls]
        else:
            span.set_attribute("order.fanout", "parallel")
            futures = [pool.submit(contextvars.copy_context().run, run, c) for c in calls]
            outcomes = [f.result() for f in futures]
        failed = [o for o in outcomes if o.error]
        if failed:
            message = "; ".join(o.error for o in failed)
            mark_error(None, message)
            return jsonify(error=f"order {order_id}: {message}"), 502
        by = {o.call.name: o.body for o in outcomes}
        products = {p["id"]: p for p in by["products"]["products"]}
        stock, discounts = by["stock"]["stock"], by["discounts"]["discounts"]
        lines, total = [], 0
        for pid, qty in items:
            product = products.get(pid, {})
            percent = discounts.get(str(pid), 0)
            price = product.get("price_cents", 0) * qty * (100 - percent) // 100
            total += price
            lines.append({"product_id": pid, "name": product.get("name"), "quantity": qty,
                          "discount_percent": percent, "line_cents": price,
                          "in_stock": stock.get(str(pid), 0) >= qty})
        return jsonify(id=order_id, created_at=created_at, user=by["user"], items=lines,
                       total_cents=total)

    @app.get("/users/<int:user_id>/orders")
    def user_orders(user_id: int):  # type: ignore[no-untyped-def]
        limit = int_arg("limit", 10, 1, 50)
        orders = svc.db.query(
            "SELECT id, created_at FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?",
            (user_id, limit))
        items: list[tuple] = []
        if orders:
            ids = [o[0] for o in orders]
            items = svc.db.query(
                "SELECT order_id, product_id, quantity FROM order_items "
                f"WHERE order_id IN ({placeholders(len(ids))}) ORDER BY order_id, product_id", ids)
        product_ids = sorted({pid for _, pid, _ in items})
        base = svc.settings.urls["product-service"]
        products: dict[int, Any] = {}
        if product_ids and svc.bugs.enabled("n_plus_one_http"):
            for pid in product_ids:  # the bug: one call per product, one after another
                o = fetch(Call("product", "product-service", f"{base}/products/{pid}", {}))
                if o.error and o.status != 404:
                    mark_error(None, o.error)
                    return jsonify(error=f"orders of user {user_id}: {o.error}"), 502
                if o.body and "id" in o.body:
                    products[o.body["id"]] = o.body
        elif product_ids:
            o = fetch(Call("products", "product-service", f"{base}/products/batch",
                           {"ids": ",".join(map(str, product_ids))}))
            if o.error:
                mark_error(None, o.error)
                return jsonify(error=f"orders of user {user_id}: {o.error}"), 502
            products = {p["id"]: p for p in o.body["products"]}
        lines: dict[int, list[dict[str, Any]]] = {}
        for order_id, pid, qty in items:
            lines.setdefault(order_id, []).append(
                {"product_id": pid, "name": products.get(pid, {}).get("name"), "quantity": qty})
        return jsonify(user_id=user_id, orders=[
            {"id": oid, "created_at": created, "items": lines.get(oid, [])}
            for oid, created in orders])
