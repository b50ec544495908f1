"""The pytest plugin against the real SUT: `sut up` (five gunicorn services) exports OTLP to the
plugin's in-test collector, and an inner test session asserts on the queries a request caused
across those processes. With `n_plus_one` switched on, the assertion fails naming the
statement."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent

CONFTEST = '''
import shutil
import sys

import pytest

sys.path.insert(0, {helpers!r})
from sut_helpers import TOKEN, SutProcess, free_base_port, http  # noqa: E402


@pytest.fixture(scope="session")
def sut(slo_collector, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    shutil.copy({db!r}, data / "sut.db")
    base = free_base_port()
    proc = SutProcess(["--data-dir", str(data), "--base-port", str(base)],
                      {{**slo_collector.env(), "SUT_ADMIN_TOKEN": TOKEN}})
    yield {{"order": f"http://127.0.0.1:{{base}}", "product": f"http://127.0.0.1:{{base + 2}}"}}
    proc.stop()


@pytest.fixture
def bugs(sut):
    def switch(*names):
        status, body = http("POST", sut["product"] + "/admin/bugs", {{"bugs": list(names)}},
                            TOKEN)
        assert status == 200, body
        import time
        time.sleep(0.3)  # every worker re-reads the switch within 100 ms
    yield switch
    switch()
'''

TESTS = '''
from sut_helpers import http


def get(url, slo_spans):
    status, _ = http("GET", url, headers=slo_spans.headers())
    assert status == 200


def test_order_queries_across_services(sut, slo_spans):
    for order in (21, 22):
        get(sut["order"] + f"/orders/{order}", slo_spans)
    order = slo_spans.slo(service="order-service", span="GET /orders/<int:order_id>")
    assert order.samples == 2
    # the order's own two queries plus the inventory and product look-ups it caused
    assert 4 <= order.db_queries <= 12
    assert order.error_rate == 0
    assert order.latency_p95 < "5s"


def test_product_page(sut, bugs, slo_spans):
    bugs({bug!r})
    get(sut["product"] + "/products?size=20", slo_spans)
    assert slo_spans.slo(service="product-service", span="GET /products").repeated_queries <= 1


def test_order_history(sut, bugs, slo_spans):
    bugs({bug!r})
    get(sut["order"] + "/users/7/orders", slo_spans)
    slo_spans.assert_no_findings()
'''


@pytest.mark.parametrize("bug", ["", "n_plus_one", "n_plus_one_http"])
def test_plugin_with_real_sut(pytester: pytest.Pytester, seeded_db: Path, bug: str) -> None:
    pytester.makeconftest(CONFTEST.format(helpers=str(HERE), db=str(seeded_db)))
    pytester.makepyfile(test_inner=TESTS.replace("{bug!r}", repr(bug)) if bug else
                        TESTS.replace("    bugs({bug!r})\n", ""))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    out = result.stdout.str()
    if not bug:
        result.assert_outcomes(passed=3)
        return
    result.assert_outcomes(passed=2, failed=1)
    if bug == "n_plus_one_http":  # calls between services, found in the test's own trace
        assert "n_plus_one_http: order-service called product-service " \
               "`GET /products/<int:product_id>`" in out
        assert "GET /users/<int:user_id>/orders" in out and "█" in out
        return
    assert "product-service GET /products: repeated_queries = 20, expected <= 1" in out
    assert "20x product-service SELECT id, name FROM categories WHERE id = ?" in out
    assert "n_plus_one: product-service `SELECT id, name FROM categories WHERE id = ?` ran " \
           "20 times" in out
    assert "slo: failed trace assertions" in out and "×20" in out

