"""The same SUT on the machine's PostgreSQL and Redis: spans from every service, Redis-backed
stock cache, and `missing_index` seen in PostgreSQL's own plan. Uses its own schema in db
`test` so it never collides with other users of that database."""

from __future__ import annotations

import uuid

import pytest
from sut_helpers import SutProcess, free_base_port, http, run_sut
from sut_otlp import Receiver

from sut import SERVICES, db, seed

PG_URL = "postgresql://127.0.0.1/test?options=-csearch_path%3Dsut_test"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def pg_url() -> str:
    seed.ensure_seeded(PG_URL)  # once; later sessions find it seeded
    return PG_URL


def test_postgres_and_redis(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver()
    base = free_base_port()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
           "SUT_CACHE_PREFIX": f"sut-test-{uuid.uuid4().hex[:8]}:", "SUT_ADMIN_TOKEN": "pg-token"}
    sut = SutProcess(["--data-dir", str(tmp_path), "--base-port", str(base), "--db", pg_url,
                      "--cache", REDIS_URL], env)
    try:
        order = f"http://127.0.0.1:{base}"
        for run in ("pg-1", "pg-2"):  # the second finds the stock in Redis
            status, body = http("GET", order + "/orders/5", headers={"baggage": f"slo.run_id={run}"})
            assert status == 200 and body["items"], body

        def complete(spans) -> bool:  # type: ignore[no-untyped-def]
            runs = [[s for s in spans if s.attributes.get("slo.run_id") == r] for r in ("pg-1", "pg-2")]
            return all({s.service for s in r} == set(SERVICES) and
                       any(s.name == "GET /orders/<int:order_id>" for s in r) for r in runs)

        spans = receiver.wait_for(complete, timeout=30)
        assert complete(spans)
        first = [s for s in spans if s.attributes.get("slo.run_id") == "pg-1"]
        second = [s for s in spans if s.attributes.get("slo.run_id") == "pg-2"]
        sql = [s for s in first if s.attributes.get("db.system") == "postgresql"]
        assert {s.service for s in sql} == set(SERVICES)
        assert all(s.attributes.get("db.system.name") == "postgresql" for s in sql)
        assert all(s.attributes.get("db.query.text") for s in sql)
        assert any(s.attributes.get("db.system") == "redis" for s in first)
        stock_sql = [s for s in second if s.service == "inventory-service"
                     and s.attributes.get("db.system") == "postgresql"]
        assert stock_sql == []  # served from Redis
        (lookup,) = [s for s in second if s.name == "cache.get"]
        assert lookup.attributes["cache.backend"] == "redis" and lookup.attributes["cache.hit"]

        args = ["--base-port", str(base), "--token", "pg-token"]
        assert run_sut(["bugs", "enable", "missing_index", *args]).returncode == 0
        plan = db.stock_plan(pg_url, [3, 4000])
        assert "Seq Scan on inventory" in plan and "idx_inventory_product" not in plan
        assert run_sut(["bugs", "disable", "missing_index", *args]).returncode == 0
        plan = db.stock_plan(pg_url, [3, 4000])
        assert "Index Scan" in plan and "idx_inventory_product" in plan
    finally:
        code = sut.stop()
        receiver.close()
    assert code == 0


def test_services_starting_at_once_create_their_schema_once() -> None:
    """Five services of a compose project start together against a fresh schema: every one
    must get through schema creation (CREATE SCHEMA IF NOT EXISTS alone races)."""
    import threading

    schema = f"sut_race_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://127.0.0.1/test?options=-csearch_path%3D{schema}"
    conns = [db.raw_connect(url) for _ in range(8)]
    start, errors = threading.Barrier(len(conns)), []

    def create(conn) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        try:
            seed._ensure_pg_schema(conn)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    try:
        for _ in range(5):  # the race is narrow: a few rounds, each on a fresh schema
            conns[0].execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            start.reset()
            threads = [threading.Thread(target=create, args=(c,)) for c in conns]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
    finally:
        conns[0].execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        for c in conns:
            c.close()
