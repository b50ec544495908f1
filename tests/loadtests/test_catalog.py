"""The SUT journeys' id sampling and service URLs (no Locust import: no gevent here)."""

from __future__ import annotations

import random

from loadtests import catalog


def test_service_urls_follow_the_sut_port_offsets(monkeypatch) -> None:
    monkeypatch.delenv("SUT_PROMOTION_URL", raising=False)
    monkeypatch.setenv("SUT_USER_URL", "http://users.internal:9000/")
    urls = catalog.service_urls("http://127.0.0.1:8080/")
    assert urls["order-service"] == "http://127.0.0.1:8080"
    assert urls["inventory-service"] == "http://127.0.0.1:8083"
    assert urls["promotion-service"] == "http://127.0.0.1:8084"
    assert urls["user-service"] == "http://users.internal:9000"


def test_product_ids_favour_the_popular_head() -> None:
    rng = random.Random(1)
    hot = catalog.SIZES["hot_products"]
    draws = [i for _ in range(2000) for i in catalog.product_ids(rng, 2)]
    assert all(1 <= i <= catalog.SIZES["products"] for i in draws)
    share = sum(1 for i in draws if i <= hot) / len(draws)
    assert 0.75 < share < 0.95  # mostly the popular head, and a steady long tail
    assert len(set(catalog.product_ids(rng, 4))) == 4


def test_ids_stay_in_the_seeded_ranges() -> None:
    rng = random.Random(2)
    for _ in range(1000):
        assert 1 <= catalog.order_id(rng) <= catalog.SIZES["orders"]
        assert 1 <= catalog.user_id(rng) <= catalog.SIZES["users"]
