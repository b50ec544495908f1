"""The stock cache: in-process dict with a TTL by default, Redis with `--cache redis://...`.

Look-ups are wrapped in a manual `cache.get` span (the instrumentation cannot see a dict) with
`cache.hit`, hit and miss counts, so a trace shows whether the database was spared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from sut.errors import SutError


class MemoryCache:
    backend = "memory"

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._data: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, int]:
        now = time.monotonic()
        with self._lock:
            found = {}
            for key in keys:
                hit = self._data.get(key)
                if hit and hit[0] > now:
                    found[key] = hit[1]
            return found

    def set_many(self, values: dict[str, int]) -> None:
        expires = time.monotonic() + self.ttl
        with self._lock:
            if len(self._data) > 100_000:
                self._data.clear()
            for key, value in values.items():
                self._data[key] = (expires, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class RedisCache:
    backend = "redis"

    def __init__(self, url: str, ttl: float, tracer_provider: Any = None) -> None:
        import redis

        self.ttl = ttl
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        if tracer_provider is not None:
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            RedisInstrumentor.instrument_client(self.client, tracer_provider=tracer_provider)

    def get_many(self, keys: list[str]) -> dict[str, int]:
        if not keys:
            return {}
        values = self.client.mget(keys)
        return {k: int(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def set_many(self, values: dict[str, int]) -> None:
        if values:
            pipe = self.client.pipeline(transaction=False)
            for key, value in values.items():
                pipe.set(key, value, ex=max(1, int(self.ttl)))
            pipe.execute()

    def clear(self) -> None:
        pass  # keys expire; tests use their own prefix


def check_redis(url: str) -> None:
    """SutError when the Redis at `url` does not answer."""
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
    except (redis.RedisError, ValueError) as e:
        raise SutError(f"cannot reach cache {url}: {e}") from e


def make_cache(url: str, ttl: float, tracer_provider: Any = None) -> MemoryCache | RedisCache:
    if url in ("", "memory", "memory://"):
        return MemoryCache(ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(url, ttl, tracer_provider)
    raise SutError(f"unknown cache {url!r}: use 'memory' or redis://host:port/db")


def stock_keys(prefix: str, product_ids: Iterable[int]) -> dict[str, int]:
    """cache key -> product id."""
    return {f"{prefix}stock:{pid}": pid for pid in product_ids}
