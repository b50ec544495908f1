"""OTLP/JSON files and Jaeger's query API (both formats, paged) -> the span table."""

from __future__ import annotations

import copy
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from slo.errors import SourceError
from slo.ingest import sources
from slo.ingest.sources import read_jaeger, read_otlp_files
from slo.ingest.spans import SCHEMA

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
OTLP = FIXTURES / "otlp-proto-example-trace.json"
JAEGER = FIXTURES / "jaeger-api-traces.json"
JAEGER_V3 = FIXTURES / "jaeger-apiv3-findtraces.json"


def test_one_document_file():
    t = read_otlp_files([str(OTLP)])
    assert t.schema == SCHEMA
    (row,) = t.to_pylist()
    assert (row["trace_id"], row["service"], row["kind"]) == (
        "5b8efff798038103d269b633813fc60c", "my.service", "server")


def test_one_request_per_line_gzipped_and_run_selection(tmp_path):
    doc = json.loads(OTLP.read_bytes())
    lines = []
    for i, run in enumerate(["a", "b", "b"]):
        d = copy.deepcopy(doc)
        span = d["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        span["spanId"] = f"{i + 1:016X}"
        span["attributes"].append({"key": "slo.run_id", "value": {"stringValue": run}})
        lines.append(json.dumps(d))
    path = tmp_path / "traces.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n\n").encode()))
    assert read_otlp_files([str(path)]).num_rows == 3
    assert read_otlp_files([str(path), str(OTLP)], run_id="b").num_rows == 2
    with pytest.raises(SourceError, match="'zzz'.*'a', 'b'"):
        read_otlp_files([str(path)], run_id="zzz")


def test_file_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(SourceError, match="cannot read"):
        read_otlp_files([str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(OTLP.read_text().replace("\n", "") + "\n{oops\n")
    with pytest.raises(SourceError, match=r"bad.jsonl:2"):
        read_otlp_files([str(bad)])
    shape = tmp_path / "shape.json"
    shape.write_text('{"resourceSpans": [{"scopeSpans": 7}]}')
    with pytest.raises(SourceError, match=r"shape.json:1"):
        read_otlp_files([str(shape)])


class FakeJaeger:
    """A tiny Jaeger query service: serves the fixtures, or clones of them, honouring limits."""

    def __init__(self, api: str, traces: int | None = None):
        self.api, self.requests = api, []
        self.internal = json.loads(JAEGER.read_bytes())
        self.v3 = json.loads(JAEGER_V3.read_bytes())
        self.clones = traces
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                outer.requests.append((u.path, q))
                body = outer.answer(u.path, q)
                self.send_response(404 if body is None else 200)
                data = json.dumps(body or {}).encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    T0 = 1_700_000_000_000_000  # µs

    def answer(self, path, q):
        if self.api == "internal" and path == "/api/services":
            return {"data": ["telemetrygen"]}
        if self.api == "v3" and path == "/api/v3/services":
            return {"services": ["foo"]}
        if self.api == "internal" and path == "/api/traces":
            if self.clones is None:
                return self.internal
            lo, hi, limit = int(q["start"]), int(q["end"]), int(q["limit"])
            data = []
            for i in range(self.clones):
                start = self.T0 + i * 1000
                if lo <= start <= hi:
                    tr = copy.deepcopy(self.internal["data"][0])
                    tr["traceID"] = f"{i + 1:032x}"
                    for s in tr["spans"]:
                        s["traceID"], s["startTime"] = tr["traceID"], start
                    data.append(tr)
            return {"data": data[-limit:]}  # Jaeger keeps the most recent
        if self.api == "v3" and path == "/api/v3/traces":
            if self.clones is None:
                return self.v3
            lo = _ns(q["query.start_time_min"])
            hi = _ns(q["query.start_time_max"])
            limit = int(q["query.num_traces"])
            spans = []
            for i in range(self.clones):
                start = self.T0 * 1000 + i * 1_000_000
                if lo <= start <= hi:
                    s = copy.deepcopy(self.v3["result"]["resourceSpans"][0]["scopeSpans"][0][
                        "spans"][0])
                    s["traceId"], s["startTimeUnixNano"] = f"{i + 1:032X}", str(start)
                    s["endTimeUnixNano"] = str(start + 5)
                    spans.append(s)
            if not spans:
                return None  # Jaeger v3 answers 404 when no trace matches
            doc = copy.deepcopy(self.v3)
            doc["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"] = spans[-limit:]
            return doc
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _ns(rfc3339: str) -> int:
    import datetime as dt

    head, frac = rfc3339.rstrip("Z").split(".")
    t = dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000 + int(frac.ljust(9, "0"))


def test_jaeger_internal_api_fixture_as_is():
    j = FakeJaeger("internal")
    try:
        t = read_jaeger(j.url, None, 1, 2_000_000_000_000_000_000)
    finally:
        j.close()
    (row,) = t.to_pylist()
    assert row["trace_id"] == "83a9efd15c1c98a977e0711cc93ee28b"
    assert row["parent_span_id"] == "909541b92cf05311"  # a parent not in the payload
    assert (row["service"], row["kind"], row["name"]) == ("telemetrygen", "server", "okey-dokey-0")
    assert row["end_ns"] - row["start_ns"] == 123_000
    assert json.loads(row["attributes"])["peer.service"] == "telemetrygen-client"
    assert "span.kind" not in json.loads(row["attributes"])
    assert [p for p, _ in j.requests] == ["/api/v3/services", "/api/services",
                                          "/api/v3/traces", "/api/traces"]


def test_jaeger_v3_fixture_as_is():
    j = FakeJaeger("v3")
    try:
        t = read_jaeger(j.url, ["foo"], 1, 2_000_000_000_000_000_000)
    finally:
        j.close()
    (row,) = t.to_pylist()
    assert (row["span_id"], row["parent_span_id"], row["status_code"]) == (
        "00000000000000b4", "", 2)


@pytest.mark.parametrize("api", ["internal", "v3"])
def test_jaeger_large_window_is_paged_in_full(monkeypatch, api):
    monkeypatch.setattr(sources, "JAEGER_PAGE", 7)
    j = FakeJaeger(api, traces=40)
    t0 = FakeJaeger.T0 * 1000
    try:
        t = read_jaeger(j.url, None, t0 - 10**9, t0 + 10**11, run_id=None)
        with pytest.raises(SourceError, match="'nope'"):
            read_jaeger(j.url, None, t0 - 10**9, t0 + 10**11, run_id="nope")
    finally:
        j.close()
    assert t.num_rows == 40 and len(set(t["trace_id"].to_pylist())) == 40
    assert len(j.requests) > 8  # it had to split the window
    if api == "v3":
        assert all(p.startswith("/api/v3/") for p, _ in j.requests)


def test_jaeger_unreachable_or_not_jaeger():
    with pytest.raises(SourceError, match="cannot reach Jaeger"):
        read_jaeger("http://127.0.0.1:9", ["x"], 1, 2)
    j = FakeJaeger("none")
    try:
        with pytest.raises(SourceError, match="neither"):
            read_jaeger(j.url, ["x"], 1, 2)
    finally:
        j.close()
