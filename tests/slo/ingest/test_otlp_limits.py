"""The same request means the same answer in protobuf and JSON: nesting depth, int64 range."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from slo.errors import PayloadError
from slo.ingest import otlp

TID, SID = "0102030405060708090a0b0c0d0e0f10", "a1a2a3a4a5a6a7a8"


def _nested_json(depth: int) -> dict:
    value: dict = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


def _nested_pb(depth: int) -> common_pb2.AnyValue:
    value = common_pb2.AnyValue(string_value="leaf")
    for _ in range(depth):
        outer = common_pb2.AnyValue()
        outer.kvlist_value.values.add(key="k").value.CopyFrom(value)
        value = outer
    return value


def _json_doc(depth: int) -> dict:
    spans = [{"traceId": TID, "spanId": SID, "name": "deep",
              "attributes": [{"key": "a", "value": _nested_json(depth)}]},
             {"traceId": TID, "spanId": "b1b2b3b4b5b6b7b8", "name": "flat",
              "attributes": [{"key": "a", "value": {"intValue": "7"}}]}]
    return {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}


def _answer(decode, body) -> tuple[int, int] | str:
    try:
        d = decode(body)
    except PayloadError:
        return "400"
    return d.spans, d.rejected


@pytest.mark.parametrize("depth", [1, 16, 17, 33, 40, 200])
def test_kvlist_depth_same_answer_in_protobuf_and_json(depth: int) -> None:
    doc = _json_doc(depth)
    req = trace_service_pb2.ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for sp in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        s = ss.spans.add(trace_id=bytes.fromhex(sp["traceId"]), span_id=bytes.fromhex(
            sp["spanId"]), name=sp["name"])
        kv = s.attributes.add(key="a")
        if sp["name"] == "deep":
            kv.value.CopyFrom(_nested_pb(depth))
        else:
            kv.value.int_value = 7
    pb = _answer(otlp.decode_protobuf, req.SerializeToString())
    js = _answer(otlp.decode_json, json.dumps(doc).encode())
    assert pb == js == ((2, 0) if depth <= otlp.MAX_VALUE_DEPTH else (1, 1)), (pb, js)


def test_json_int_value_outside_int64_is_refused() -> None:
    def doc(v: object) -> bytes:
        return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"traceId": TID, "spanId": SID, "name": "x",
             "attributes": [{"key": "n", "value": {"intValue": v}}]}]}]}]}).encode()

    for ok in (str(otlp.INT64_MAX), str(otlp.INT64_MIN), 12):
        assert otlp.decode_json(doc(ok)).spans == 1
    for bad in (str(2**70), 2**63, str(-(2**63) - 1)):
        with pytest.raises(PayloadError, match="outside the int64 range"):
            otlp.decode_json(doc(bad))
