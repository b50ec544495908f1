"""OTLP decoding: real fixtures, id rules, partial success, hostile bodies (hypothesis)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from slo.errors import PayloadError
from slo.ingest import otlp
from slo.ingest.spans import SCHEMA

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _kv(key, **value):
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))


def _request(spans, resource=None):
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for kv in resource or [_kv("service.name", string_value="svc")]:
        rs.resource.attributes.append(kv)
    ss = rs.scope_spans.add()
    ss.spans.extend(spans)
    return req


def _span(i=1, **kw):
    base = dict(trace_id=bytes(range(1, 17)), span_id=i.to_bytes(8, "big"), name=f"s{i}",
                start_time_unix_nano=1_000 + i, end_time_unix_nano=2_000 + i, kind=2)
    base.update(kw)
    return trace_pb2.Span(**base)


def test_fixture_uppercase_hex_and_numbers():
    doc = (FIXTURES / "otlp-proto-example-trace.json").read_bytes()
    d = otlp.decode_json(doc)
    assert d.rejected == 0
    (row,) = d.table.to_pylist()
    assert row["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert row["span_id"] == "eee19b7ec3c1b174"
    assert row["parent_span_id"] == "eee19b7ec3c1b173"
    assert row["service"] == "my.service"
    assert row["kind"] == "server"
    assert row["start_ns"] == 1544712660000000000
    assert json.loads(row["attributes"]) == {"my.span.attr": "some value"}
    assert d.table.schema == SCHEMA


def test_jaeger_v3_fixture_strings_empty_parent_and_status_without_message():
    doc = json.loads((FIXTURES / "jaeger-apiv3-findtraces.json").read_bytes())
    (row,) = otlp.decode_json(doc["result"]).table.to_pylist()
    assert row["parent_span_id"] == ""
    assert row["status_code"] == 2 and row["status_message"] == ""
    assert row["trace_id"] == "000000000000009600000000000000a0"
    assert row["start_ns"] == otlp.INT64_MAX  # uint64 beyond int64 is clamped, not wrapped


def test_protobuf_promoted_columns_run_ids_and_kinds():
    spans = [
        _span(1, attributes=[_kv("db.system", string_value="sqlite"),
                             _kv("db.statement", string_value="SELECT 1"),
                             _kv("slo.run_id", string_value="span-run")]),
        _span(2, parent_span_id=(1).to_bytes(8, "big"), kind=3,
              attributes=[_kv("http.route", string_value="/x"),
                          _kv("http.response.status_code", int_value=503),
                          _kv("ok", bool_value=True), _kv("f", double_value=1.5)],
              status=trace_pb2.Status(code=2, message="boom")),
    ]
    d = otlp.decode_protobuf(_request(spans).SerializeToString(), run_id="cli-run")
    a, b = d.table.to_pylist()
    assert (a["run_id"], a["db_system"], a["db_statement"]) == ("span-run", "sqlite", "SELECT 1")
    assert b["run_id"] == "cli-run" and b["kind"] == "client" and a["kind"] == "server"
    assert (b["http_route"], b["http_status_code"]) == ("/x", 503)
    assert b["parent_span_id"] == "0000000000000001" and a["parent_span_id"] == ""
    assert (b["status_code"], b["status_message"]) == (2, "boom")
    assert json.loads(b["attributes"])["ok"] is True
    res_run = _request([_span(3)], [_kv("service.name", string_value="s"),
                                     _kv("slo.run_id", string_value="res-run")])
    assert otlp.decode_protobuf(res_run.SerializeToString(), "cli").table["run_id"].to_pylist() == [
        "res-run"]


def test_bad_ids_are_rejected_per_span_with_a_reason():
    spans = [_span(1), _span(2, trace_id=b"\x01" * 15), _span(3, span_id=b"\0" * 8),
             _span(4, parent_span_id=b"\x01" * 3)]
    d = otlp.decode_protobuf(_request(spans).SerializeToString())
    assert d.spans == 1 and d.rejected == 3
    assert "trace_id" in d.message and "span_id" in d.message
    body = otlp.success_body(d.rejected, d.message, as_json=False)
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 3
    assert json.loads(otlp.success_body(3, "x", True))["partialSuccess"]["rejectedSpans"] == "3"


def test_json_ids_either_case_int64_strings_enum_names_snake_case():
    doc = {"resource_spans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "s"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": "AbCdEf00000000000000000000000001", "spanId": "00000000000000AA",
             "name": "n", "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": "5",
             "endTimeUnixNano": 7, "status": {"code": "STATUS_CODE_ERROR"},
             "attributes": [{"key": "n", "value": {"intValue": "42"}},
                            {"key": "l", "value": {"arrayValue": {"values": [
                                {"stringValue": "a"}, {"doubleValue": 2.5}]}}}],
             "unknownField": {"ignored": True}},
            {"traceId": "zz", "spanId": "00000000000000AA"}]}]}]}
    d = otlp.decode_json(json.dumps(doc).encode())
    (row,) = d.table.to_pylist()
    assert d.rejected == 1
    assert row["trace_id"] == "abcdef00000000000000000000000001"
    assert row["span_id"] == "00000000000000aa"
    assert (row["kind"], row["start_ns"], row["end_ns"], row["status_code"]) == ("client", 5, 7, 2)
    assert json.loads(row["attributes"]) == {"n": 42, "l": ["a", 2.5]}


def test_decompress_limits_gzip_bombs_and_rejects_garbage():
    bomb = gzip.compress(b"\0" * (5 * 1024 * 1024))
    assert len(bomb) < 10_000
    with pytest.raises(otlp.PayloadTooLarge):
        otlp.decompress(bomb, "gzip", limit=1024 * 1024)
    assert otlp.decompress(gzip.compress(b"abc"), "gzip", limit=3) == b"abc"
    with pytest.raises(PayloadError):
        otlp.decompress(b"not gzip", "gzip")
    with pytest.raises(PayloadError):
        otlp.decompress(gzip.compress(b"abcdef")[:-6], "gzip")
    with pytest.raises(PayloadError):
        otlp.decompress(b"x", "br")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_payload_error(data):
    valid = _request([_span(1), _span(2)]).SerializeToString()
    for body in (data, valid[: len(data) % (len(valid) + 1)], data + valid):
        try:
            d = otlp.decode_protobuf(body)
        except PayloadError:
            continue
        assert d.table.schema == SCHEMA


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_json = st.recursive(_json_leaf, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.sampled_from(
        ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "attributes", "key",
         "value", "stringValue", "intValue", "kind", "status", "code", "resource", "events",
         "startTimeUnixNano", "arrayValue", "values", "name"]), c, max_size=5)), max_leaves=20)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_hostile_json_decodes_or_payload_error(doc):
    try:
        d = otlp.decode_json(json.dumps(doc).encode())
    except PayloadError:
        return
    assert d.table.schema == SCHEMA


def _any_value():
    leaf = st.one_of(
        st.builds(lambda x: common_pb2.AnyValue(string_value=x), st.text(max_size=5)),
        st.builds(lambda x: common_pb2.AnyValue(int_value=x),
                  st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)),
        st.builds(lambda x: common_pb2.AnyValue(bool_value=x), st.booleans()),
        st.builds(lambda x: common_pb2.AnyValue(double_value=x), st.floats()),
        st.builds(lambda x: common_pb2.AnyValue(bytes_value=x), st.binary(max_size=4)),
        st.just(common_pb2.AnyValue()),
    )
    return st.recursive(leaf, lambda c: st.one_of(
        st.builds(lambda xs: common_pb2.AnyValue(
            array_value=common_pb2.ArrayValue(values=xs)), st.lists(c, max_size=3)),
        st.builds(lambda kv: common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(
            values=[common_pb2.KeyValue(key=k, value=v) for k, v in kv.items()])),
            st.dictionaries(st.text(max_size=3), c, max_size=3))), max_leaves=6)


_keys = st.sampled_from(["db.system", "db.statement", "http.route", "http.status_code",
                         "http.response.status_code", "slo.run_id", "k", "x.y"])
_pb_span = st.builds(
    lambda tid, sid, pid, kind, t0, t1, code, attrs, name: trace_pb2.Span(
        trace_id=tid, span_id=sid, parent_span_id=pid, kind=kind, start_time_unix_nano=t0,
        end_time_unix_nano=t1, status=trace_pb2.Status(code=code, message=name), name=name,
        attributes=[common_pb2.KeyValue(key=k, value=v) for k, v in attrs.items()]),
    st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=17)),
    st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=9)),
    st.one_of(st.just(b""), st.just(b"\0" * 8), st.binary(min_size=8, max_size=8),
              st.binary(max_size=9)),
    st.integers(min_value=0, max_value=9), st.integers(min_value=0, max_value=(1 << 64) - 1),
    st.integers(min_value=0, max_value=(1 << 64) - 1), st.integers(min_value=0, max_value=5),
    st.dictionaries(_keys, _any_value(), max_size=4), st.text(max_size=6))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_pb_span, max_size=5), st.dictionaries(_keys, _any_value(), max_size=3))
def test_protobuf_fast_path_agrees_with_json_path(spans, resource):
    """The column-wise protobuf decoder and the JSON walker give the same table."""
    from google.protobuf import json_format

    req = _request(spans, [common_pb2.KeyValue(key=k, value=v) for k, v in resource.items()])
    a = otlp.decode_protobuf(req.SerializeToString(), run_id="cli")
    b = otlp.decode_json(json.dumps(json_format.MessageToDict(req)).encode(), run_id="cli")
    assert a.rejected == b.rejected
    assert a.table.equals(b.table), (a.table.to_pylist(), b.table.to_pylist())
    assert a.table.schema == SCHEMA
