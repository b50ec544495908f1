"""promotion-service: GET /discounts?product_ids=&user_id=.

Bug `slow_downstream`: a pricing-rules call that takes about 300 ms longer (injected)."""

from __future__ import annotations

import time

from flask import Flask, jsonify

from sut.db import placeholders
from sut.web import Service, int_arg, int_list

SLOW_SECONDS = 0.3
LOYALTY_PERCENT = 5


def register(app: Flask, svc: Service) -> None:
    @app.get("/discounts")
    def discounts():  # type: ignore[no-untyped-def]
        ids = int_list("product_ids")
        user_id = int_arg("user_id", 0, 0, 2**31 - 1)
        rows = svc.db.query(
            f"SELECT product_id, percent FROM promotions WHERE product_id IN ({placeholders(len(ids))})",
            ids)
        with svc.tracer.start_as_current_span("evaluate pricing rules") as span:
            span.set_attribute("promotion.rules", len(rows))
            if svc.bugs.enabled("slow_downstream"):
                span.set_attribute("promotion.slow", True)
                time.sleep(SLOW_SECONDS)
            loyalty = LOYALTY_PERCENT if user_id and user_id % 10 == 0 else 0
            percent = {int(pid): int(p) for pid, p in rows}
        return jsonify(discounts={str(pid): percent.get(pid, 0) + loyalty for pid in ids},
                       user_id=user_id or None)
