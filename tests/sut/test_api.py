"""Bad input gets a clear 4xx answer naming what was wrong, never a 500."""

from __future__ import annotations

import pytest
from sut_helpers import TOKEN, http

from sut.bugs import BUGS


@pytest.mark.parametrize("service", ["order-service", "promotion-service"])
def test_admin_needs_the_token(clean_stack, service: str) -> None:  # type: ignore[no-untyped-def]
    url = clean_stack.urls[service] + "/admin/bugs"
    assert http("GET", url)[0] == 401
    status, body = http("POST", url, {"enable": ["n_plus_one"]}, token="wrong")
    assert status == 401 and "token" in body["error"]
    status, body = http("GET", url, token=TOKEN)
    assert status == 200 and body["bugs"] == [] and body["available"] == list(BUGS)


def test_admin_rejects_bad_bodies(clean_stack) -> None:  # type: ignore[no-untyped-def]
    url = clean_stack.urls["user-service"] + "/admin/bugs"
    status, body = http("POST", url, {"enable": ["n_plus_two"]}, token=TOKEN)
    assert status == 400 and "n_plus_two" in body["error"] and "missing_index" in body["error"]
    status, body = http("POST", url, raw=b"{not json", token=TOKEN)
    assert status == 400 and "JSON object" in body["error"]
    status, body = http("POST", url, {"enable": "n_plus_one"}, token=TOKEN)
    assert status == 400 and "list" in body["error"]
    status, body = http("POST", url, {"switch": []}, token=TOKEN)
    assert status == 400 and "switch" in body["error"]
    assert http("GET", url, token=TOKEN)[1]["bugs"] == []  # nothing changed


def test_admin_switch_is_seen_by_every_service(clean_stack) -> None:  # type: ignore[no-untyped-def]
    status, body = http("POST", clean_stack.urls["order-service"] + "/admin/bugs",
                        {"enable": ["serial_fanout", "n_plus_one"]}, token=TOKEN)
    assert status == 200 and body["bugs"] == ["n_plus_one", "serial_fanout"]
    status, body = http("POST", clean_stack.urls["product-service"] + "/admin/bugs",
                        {"disable": ["serial_fanout"]}, token=TOKEN)
    assert body["bugs"] == ["n_plus_one"]
    for url in clean_stack.urls.values():
        assert http("GET", url + "/admin/bugs", token=TOKEN)[1]["bugs"] == ["n_plus_one"]


@pytest.mark.parametrize(("service", "path", "status", "fragment"), [
    ("order-service", "/orders/999999999", 404, "order 999999999 not found"),
    ("order-service", "/orders/abc", 404, "Not Found"),
    ("user-service", "/users/0", 404, "user 0 not found"),
    ("product-service", "/products?page=0", 400, "'page'"),
    ("product-service", "/products?size=x", 400, "'size'"),
    ("product-service", "/products/batch", 400, "'ids' is required"),
    ("product-service", "/products/batch?ids=1,x", 400, "integers"),
    ("inventory-service", "/stock?product_ids=", 400, "'product_ids'"),
    ("inventory-service", "/stock?product_ids=" + ",".join(map(str, range(1, 200))), 400, "at most"),
    ("promotion-service", "/discounts?product_ids=1&user_id=-3", 400, "'user_id'"),
])
def test_bad_requests(clean_stack, service: str, path: str, status: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    got, body = http("GET", clean_stack.urls[service] + path)
    assert got == status and fragment in body["error"], body


def test_unknown_ids_in_batches(clean_stack) -> None:  # type: ignore[no-untyped-def]
    status, body = http("GET", clean_stack.urls["product-service"] + "/products/batch?ids=1,999999")
    assert status == 200 and [p["id"] for p in body["products"]] == [1] and body["missing"] == [999999]
    status, body = http("GET", clean_stack.urls["inventory-service"] + "/stock?product_ids=999999")
    assert status == 200 and body["stock"] == {"999999": 0}


def test_create_user_validates(clean_stack) -> None:  # type: ignore[no-untyped-def]
    url = clean_stack.urls["user-service"] + "/users"
    assert http("POST", url, raw=b"nope")[0] == 400
    status, body = http("POST", url, {"name": "", "email": "a@b.c"})
    assert status == 400 and "'name'" in body["error"]
    status, body = http("POST", url, {"name": "Ada", "email": "not-an-email"})
    assert status == 400 and "'email'" in body["error"]
    status, body = http("POST", url, {"name": "Ada", "email": "ada@example.com"})
    assert status == 201 and body["id"] > 10_000
    status, got = http("GET", clean_stack.urls["user-service"] + f"/users/{body['id']}")
    assert status == 200 and got["email"] == "ada@example.com"


def test_metrics_endpoint(clean_stack) -> None:  # type: ignore[no-untyped-def]
    import urllib.request

    http("GET", clean_stack.urls["user-service"] + "/users/2")
    with urllib.request.urlopen(clean_stack.urls["user-service"] + "/metrics") as r:
        text = r.read().decode()
    assert 'service_name="user-service"' in text
    assert "http_server_duration" in text or "http_server_request_duration" in text
