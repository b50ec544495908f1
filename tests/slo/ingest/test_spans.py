"""The one attribute-promotion rule (`slo.ingest.spans.promoted_lists`) as every path applies it."""

from __future__ import annotations

from slo.ingest import otlp
from slo.ingest.spans import make_row, promoted, statement

OLD = {"db.system": "postgresql", "db.statement": "SELECT 1", "http.route": "/a",
       "http.status_code": 503}
STABLE = {"db.system.name": "sqlite", "db.query.text": "SELECT 2", "http.route": "/b",
          "http.response.status_code": "404"}


def test_old_and_stable_names_promote_and_stable_wins():
    assert promoted(OLD) == {"db_system": "postgresql", "db_statement": "SELECT 1",
                             "http_route": "/a", "http_status_code": 503}
    both = {**OLD, **STABLE}
    assert promoted(both) == {"db_system": "sqlite", "db_statement": "SELECT 2",
                              "http_route": "/b", "http_status_code": 404}
    assert promoted({}) == {"db_system": "", "db_statement": "", "http_route": "",
                            "http_status_code": 0}
    assert promoted({"http.status_code": 1 << 40})["http_status_code"] == 0  # not int32
    assert statement(OLD) == "SELECT 1" and statement(both) == "SELECT 2"


def _otlp_json(attrs: dict) -> dict:
    kv = [{"key": k, "value": ({"intValue": str(v)} if isinstance(v, int)
                               else {"stringValue": v})} for k, v in attrs.items()]
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
        "name": "x", "kind": 3, "startTimeUnixNano": "1", "endTimeUnixNano": "2",
        "attributes": kv}]}]}]}


def test_decoder_and_make_row_promote_alike():
    """(protobuf vs JSON decoding agree: test_otlp's hypothesis test)"""
    cols = ["db_system", "db_statement", "http_route", "http_status_code"]
    for attrs in (OLD, STABLE, {**OLD, **STABLE}, {}):
        json_row = otlp.decode_json(_otlp_json(attrs)).table.select(cols).to_pylist()[0]
        row = make_row(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331",
                       name="x", start_ns=1, end_ns=2, attributes=attrs)
        assert json_row == {c: row[c] for c in cols} == promoted(attrs)
