"""The pytest plugin through pytest's own `pytester`: inner test sessions whose "service" is
an OpenTelemetry SDK exporting real OTLP/HTTP to the plugin's in-test collector."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

# The inner session's conftest: a tiny traced "service" that answers one request with N
# queries, exporting through the real OTLP/HTTP exporter to the in-test collector.
CONFTEST = '''
import time

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind


class Service:
    def __init__(self, endpoint):
        self.provider = TracerProvider(resource=Resource.create({"service.name": "catalog"}))
        self.provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
        self.tracer = self.provider.get_tracer("test")

    def get_things(self, headers, queries, fail=False):
        ctx = extract(headers)
        with self.tracer.start_as_current_span("GET /things", context=ctx,
                                               kind=SpanKind.SERVER) as root:
            root.set_attribute("http.route", "/things")
            root.set_attribute("http.response.status_code", 500 if fail else 200)
            with self.tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as s:
                s.set_attribute("db.system", "sqlite")
                s.set_attribute("db.statement", "SELECT id FROM things LIMIT 20")
            for i in range(queries):
                with self.tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as s:
                    s.set_attribute("db.system", "sqlite")
                    s.set_attribute("db.statement",
                                    f"SELECT name FROM categories WHERE id = {i + 1}")
                    time.sleep(0.001)


@pytest.fixture(scope="session")
def service(slo_collector):
    svc = Service(slo_collector.endpoint)
    yield svc
    svc.provider.shutdown()
'''

TESTS = '''
def test_few_queries(service, slo_spans):
    service.get_things(slo_spans.headers(), queries=1)
    things = slo_spans.slo(service="catalog", span="GET /things")
    assert things.db_queries <= 3
    assert things.repeated_queries == 1
    assert things.error_rate <= "0%"
    assert things.latency_p95 < "5s"
    assert things.samples == 1


def test_n_plus_one(service, slo_spans):
    for _ in range(2):
        service.get_things(slo_spans.headers(), queries=12)
    assert slo_spans.slo(service="catalog", span="GET /things").repeated_queries <= 3


def test_expect_latency(service, slo_spans):
    service.get_things(slo_spans.headers(), queries=2)
    slo_spans.slo(service="catalog", span="GET /things").expect(latency_p95="1us")


def test_no_data(service, slo_spans):
    service.get_things(slo_spans.headers(), queries=1)
    assert slo_spans.slo(service="catalog", span="GET /nothing").db_queries <= 3
'''


def test_assertions_over_real_otlp(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--slo-wait", "5")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    # the N+1: the value, the normalized statement, the detector, the waterfall section
    assert "catalog GET /things: repeated_queries = 12, expected <= 3 (2 spans over 2 " \
           "traces)" in out
    assert "12x catalog SELECT name FROM categories WHERE id = ?" in out
    assert "n_plus_one: catalog `SELECT name FROM categories WHERE id = ?` ran 12 times" in out
    assert "slo: failed trace assertions" in out and "█" in out
    # expect(): spec-style budgets, full message in the AssertionError
    assert "latency_p95 = " in out and "expected <= 1us" in out
    # a selector that matches nothing says so, with the names it did see
    assert "db_queries = no data" in out and "'GET /things'" in out


SPEC = '''
version: 1
slos:
  - name: things
    select: {service: catalog, span: "GET /things"}
    objectives:
      repeated_queries: 3
      error_rate: 50%
  - name: missing
    select: {service: catalog, span: "GET /missing"}
    objectives:
      latency_p95: 1s
'''

SESSION_TESTS = '''
def test_one(service, slo_spans):
    service.get_things(slo_spans.headers(), queries=2)


def test_two(service, slo_spans):
    service.get_things(slo_spans.headers(), queries={queries})
'''


@pytest.mark.parametrize("queries", [2, 9])
def test_slo_spec_session_item(pytester: pytest.Pytester, queries: int) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=SESSION_TESTS.format(queries=queries))
    spec = pytester.makefile(".yaml", slo=SPEC)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--slo-spec", str(spec),
                                           f"--junitxml={junit}", "-rA")
    # the two tests pass; the spec item fails: "missing" has no data, and at 9 queries the
    # repeated-query budget fails too
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "NO_DATA  missing latency_p95" in out
    assert "traces: 2 of 2 traces complete." in out
    status = "FAIL    " if queries > 3 else "PASS    "
    assert f"{status} things repeated_queries: {queries}" in out
    case = [c for c in ET.parse(junit).getroot().iter("testcase")
            if c.get("name") == "slo-spec[slo.yaml]"]
    assert len(case) == 1 and case[0].find("failure") is not None
    props = {p.get("name"): p.get("value") for p in case[0].iter("property")}
    assert props["missing/latency_p95"].startswith("no_data")
    assert props["things/repeated_queries"].startswith("fail" if queries > 3 else "pass")
    assert props["things/error_rate"].startswith("pass")


def test_slo_spec_passes_and_bad_spec_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=SESSION_TESTS.format(queries=1))
    spec = pytester.makefile(".yaml", slo="\n".join(SPEC.splitlines()[:8]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--slo-spec", str(spec))
    result.assert_outcomes(passed=3)
    bad = pytester.makefile(".yaml", bad="version: 1\nslos:\n  - name: x\n    select: {}\n")
    result = pytester.runpytest_subprocess("--slo-spec", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--slo-spec: " in result.stderr.str() and "bad.yaml:4" in result.stderr.str()


def test_unused_plugin_starts_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain='''
import sys, threading

def test_plain(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("slo")  # loaded through pytest11
    heavy = [m for m in ("slo.ingest.collector", "pyarrow", "locust", "slo.judge.check") if m in sys.modules]
    assert heavy == []
    assert not [t for t in threading.enumerate() if t.name.startswith("otlp")]
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
