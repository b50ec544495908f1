"""inventory-service: GET /stock?product_ids= (total stock per product, cached).

Bugs: `missing_index` drops the index on inventory.product_id for real (the look-up then scans
400k rows); `cache_bypass` never reads the cache (it still writes it, as such bugs do)."""

from __future__ import annotations

from flask import Flask, jsonify

from sut import db as dbmod
from sut.cache import make_cache, stock_keys
from sut.web import Service, int_list


def register(app: Flask, svc: Service) -> None:
    settings = svc.settings
    cache = make_cache(settings.cache_url, settings.cache_ttl, svc.tracer_provider)
    svc.cache = cache

    def apply_index(bugs: frozenset[str]) -> None:
        want = "missing_index" not in bugs
        if dbmod.inventory_index_present(settings.db_url) != want:
            dbmod.set_inventory_index(settings.db_url, want)

    svc.bugs.on_change(apply_index)

    @app.get("/stock")
    def stock():  # type: ignore[no-untyped-def]
        ids = int_list("product_ids")
        keys = stock_keys(settings.cache_prefix, ids)
        result: dict[int, int] = {}
        bypass = svc.bugs.enabled("cache_bypass")
        with svc.tracer.start_as_current_span("cache.get") as span:
            span.set_attribute("cache.backend", cache.backend)
            span.set_attribute("cache.keys", len(keys))
            if bypass:
                span.set_attribute("cache.skipped", True)
            else:
                for key, value in cache.get_many(list(keys)).items():
                    result[keys[key]] = value
            span.set_attribute("cache.hits", len(result))
            span.set_attribute("cache.misses", len(ids) - len(result))
            span.set_attribute("cache.hit", len(result) == len(ids))
        missing = [pid for pid in ids if pid not in result]
        if missing:
            rows = svc.db.query(dbmod.STOCK_SQL.format(dbmod.placeholders(len(missing))), missing)
            loaded = {pid: 0 for pid in missing}
            loaded.update({int(pid): int(qty) for pid, qty in rows})
            cache.set_many({f"{settings.cache_prefix}stock:{pid}": q for pid, q in loaded.items()})
            result.update(loaded)
        return jsonify(stock={str(pid): result[pid] for pid in ids}, cached=len(ids) - len(missing))
