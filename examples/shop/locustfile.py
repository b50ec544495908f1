"""Load for the example shop: a plain Locust file, no tracing code and no import of the gate.

`slo gate --locustfile examples/shop/locustfile.py ...` loads the SLO plugin beside it, which
adds `traceparent` and `baggage: slo.run_id` to every request.
"""

from __future__ import annotations

import random

from locust import HttpUser, between, task


class Shopper(HttpUser):
    wait_time = between(0.05, 0.2)

    @task(3)
    def list_products(self) -> None:
        self.client.get("/products")

    @task(1)
    def product_page(self) -> None:
        self.client.get(f"/products/{random.randint(1, 2000)}", name="/products/[id]")
