"""Where the SUT lives and which ids its seeded data holds, for the journeys to draw from.

Ids are drawn skewed like real shop traffic (a few popular products get most views), which
also lets a short test warm inventory's stock cache. The sizes come from the SUT's seed module
when it is importable (same repository), else from SUT_* environment variables, else defaults.
No locust import: plain functions, testable without gevent.
"""

from __future__ import annotations

import os
import random
from urllib.parse import urlsplit

DEFAULT_HOST = os.environ.get("LOCUST_HOST") or "http://127.0.0.1:8080"

#: service -> port offset from order-service (the SUT's contract)
OFFSETS = {
    "order-service": 0,
    "user-service": 1,
    "product-service": 2,
    "inventory-service": 3,
    "promotion-service": 4,
}


def _seed_sizes() -> dict[str, int]:
    sizes = {"products": 10_000, "users": 10_000, "orders": 50_000, "hot_products": 100}
    hot_share = 0.95
    try:  # the SUT documents its data sizes and popular products; use them when installed
        from sut import seed

        sizes["products"] = int(seed.PRODUCTS)
        sizes["users"] = int(seed.USERS)
        sizes["orders"] = int(seed.ORDERS)
        sizes["hot_products"] = len(seed.HOT_PRODUCTS)
        hot_share = float(seed.HOT_SHARE)
    except Exception:  # noqa: BLE001 - an absent or different SUT just means defaults
        pass
    for key in sizes:
        env = os.environ.get(f"SUT_N_{key.upper()}")
        if env and env.isdigit():
            sizes[key] = int(env)
    sizes["hot_share_pct"] = round(hot_share * 100)
    return sizes


SIZES = _seed_sizes()


def service_urls(host: str) -> dict[str, str]:
    """URLs of the five services, from order-service's URL and the SUT's port offsets."""
    parts = urlsplit(host.rstrip("/"))
    base_port = parts.port or (443 if parts.scheme == "https" else 80)
    urls = {}
    for name, offset in OFFSETS.items():
        env = os.environ.get("SUT_" + name.split("-")[0].upper() + "_URL")
        if env:
            urls[name] = env.rstrip("/")
        else:
            urls[name] = f"{parts.scheme}://{parts.hostname}:{base_port + offset}"
    return urls


#: share of product views on the popular head. Lower than the seeded orders' share on purpose:
#: the long tail keeps a steady ~30% of stock look-ups missing the cache, so per-request
#: query counts are stable (a miss rate near 0% or 50% makes their max or median flip by
#: chance between two runs) and a slower look-up (missing_index) always shows.
HOT_VIEW_PCT = 80


def product_ids(rng: random.Random, k: int) -> list[int]:
    """k distinct product ids, mostly from the popular head (see HOT_VIEW_PCT)."""
    out: set[int] = set()
    hot = max(1, min(SIZES["hot_products"], SIZES["products"]))
    while len(out) < k:
        if rng.random() * 100 < HOT_VIEW_PCT:
            out.add(rng.randint(1, hot))
        else:
            out.add(rng.randint(1, SIZES["products"]))
    return sorted(out)


def order_id(rng: random.Random) -> int:
    return rng.randint(1, SIZES["orders"])


def user_id(rng: random.Random) -> int:
    return rng.randint(1, SIZES["users"])
