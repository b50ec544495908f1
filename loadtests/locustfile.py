"""Shop journeys against the SUT, plus the SLO plugin (SLO tab, final check, exit code).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080
    locust -f loadtests/locustfile.py --headless -u 20 -r 10 -t 30s --slo-spec slo.yaml

`--host` (or LOCUST_HOST, default http://127.0.0.1:8080) is order-service; the other services
are at the SUT's port offsets (user +1, product +2, inventory +3, promotion +4) unless
SUT_USER_URL, SUT_PRODUCT_URL, SUT_INVENTORY_URL or SUT_PROMOTION_URL say otherwise.
Every request is the root of a new W3C trace and carries `baggage: slo.run_id=<run id>`.
Request names are routes (`/orders/[id]`) so Locust's table has one row per endpoint.
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from loadtests import catalog, slo_plugin  # noqa: F401  (slo_plugin registers its listeners)
from loadtests.context import TRACER


class _Journeys(FastHttpUser):
    abstract = True
    host = catalog.DEFAULT_HOST

    def on_start(self) -> None:
        self.urls = catalog.service_urls(self.host or catalog.DEFAULT_HOST)
        self.rng = random.Random()
        self.user_id = catalog.user_id(self.rng)

    def _request(self, method: str, service: str, path: str, name: str, **kw: object) -> None:
        """One request as a client span whose context (and run id) travel in the headers."""
        url = self.urls[service] + path
        span, headers = TRACER.start(name, method, url)
        resp = self.client.request(method, url, name=name, headers=headers, **kw)
        error = getattr(resp, "error", None)  # set on ErrorResponse (no HTTP answer)
        TRACER.finish(span, resp.status_code or 0, str(error) if error else None)

    def _get(self, service: str, path: str, name: str) -> None:
        self._request("GET", service, path, name)


class ShopUser(_Journeys):
    """A shopper: mostly looks at orders, browses products, checks stock and discounts."""

    wait_time = between(0.05, 0.3)

    @task(40)
    def order_detail(self) -> None:
        self._get("order-service", f"/orders/{catalog.order_id(self.rng)}", "/orders/[id]")

    @task(15)
    def browse_products(self) -> None:
        self._get("product-service", "/products", "/products")

    @task(10)
    def product_page(self) -> None:
        ids = ",".join(str(i) for i in catalog.product_ids(self.rng, self.rng.randint(1, 4)))
        self._get("product-service", f"/products/batch?ids={ids}", "/products/batch")

    @task(20)
    def stock_check(self) -> None:
        ids = ",".join(str(i) for i in catalog.product_ids(self.rng, self.rng.randint(1, 2)))
        self._get("inventory-service", f"/stock?product_ids={ids}", "/stock")

    @task(6)
    def discounts(self) -> None:
        ids = ",".join(str(i) for i in catalog.product_ids(self.rng, 2))
        self._get(
            "promotion-service",
            f"/discounts?product_ids={ids}&user_id={self.user_id}",
            "/discounts",
        )

    @task(10)
    def profile(self) -> None:
        self._get("user-service", f"/users/{catalog.user_id(self.rng)}", "/users/[id]")

    @task(5)
    def order_history(self) -> None:
        self._get("order-service", f"/users/{catalog.user_id(self.rng)}/orders",
                  "/users/[id]/orders")



class NewCustomer(_Journeys):
    """New customers arriving: sign up, then look at their profile.

    One such user (fixed_count) gives sign-ups a steady trickle, as in a shop, so that even a
    few seconds of load holds enough of them to check (a rare random task could draw none).
    """

    fixed_count = 1
    wait_time = between(0.2, 0.5)

    @task
    def sign_up(self) -> None:
        n = self.rng.getrandbits(48)
        self._request(
            "POST",
            "user-service",
            "/users",
            "/users (sign-up)",
            json={"name": f"Load Tester {n}", "email": f"load-{n}@example.test"},
        )
        self._get("user-service", f"/users/{catalog.user_id(self.rng)}", "/users/[id]")
