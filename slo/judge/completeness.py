"""Whole traces, sampled runs: how much of each trace arrived, said out loud.

Teams trace production-like environments with samplers, and exporters drop spans under
pressure. A check over cut traces counts too few queries under a request and calls a trace
broken when it was only cut. So every report says how many traces arrived whole, objectives
that count inside one request use only those, and a run that shows signs of sampling says so.

A trace is *complete* when every span's parent arrived, except the one parent of its entry
spans that an untraced caller (a load tool, a test) named in `traceparent` and never
exported (no root and one missing parent id is complete; a root plus any missing parent, or
two missing parent ids, is not), and every call it made was answered in it by a server span,
unless the callee never answers that call anywhere in the run (an uninstrumented service): a
call answered in other traces but not in this one means the callee's spans were cut.

Sampling signals (any one makes `detected` true):
- sampler attributes on spans (`sampler.type`/`sampler.param` of Jaeger clients,
  `sampling.priority`, `otel.sampling.*`);
- a W3C `tracestate` with OpenTelemetry's sampling keys (`ot=th:...`, `ot=p:...`, kept by the
  OTLP decoder as the `slo.tracestate` attribute);
- far fewer traces than the load tool's requests (run metadata), below 80%: head sampling
  keeps traces whole but keeps few of them;
- client calls far above the server spans that answered them (more than half of at least
  10 calls have no server span under them in the same trace): the callees sample on their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slo.ingest.marks import SAMPLING_WORDS
from slo.ingest.spans import TRACESTATE_ATTR
from slo.judge.tree import RunIndex

_SAMPLER_KEYS = re.compile(
    r'"(sampler\.type|sampler\.param|sampling\.priority|otel\.sampling[^"]*)"')
#: One pass over the attributes finds every span worth a closer look.
_SIGNAL_KEYS = r'"(sampler\.|sampling\.|otel\.sampling|slo\.tracestate")'
#: Words every match of _SIGNAL_KEYS contains: a cheap pre-filter for the regular expression.
_SIGNAL_WORDS = SAMPLING_WORDS  # (compaction records whether a file holds them)
_OT_SAMPLING = re.compile(r"(?:^|,)\s*ot=[^,]*\b(?:th|p|r|rv):")
#: Client calls without an answering server span, as a share of all calls, that says sampling.
UNANSWERED_SHARE = 0.5
#: Traces per request sent below which a run counts as head-sampled.
SENT_SHARE = 0.8
MIN_CALLS = 10


@dataclass
class Completeness:
    traces: int = 0
    complete: int = 0
    missing_parents: int = 0  # spans whose parent never arrived, entry spans excepted
    cut_calls: int = 0  # calls unanswered here that the same callee answers elsewhere
    clients: int = 0
    unanswered_clients: int = 0
    signals: list[str] = field(default_factory=list)
    row_complete: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def incomplete(self) -> int:
        return self.traces - self.complete

    @property
    def detected(self) -> bool:
        return bool(self.signals)

    def keep(self, rows: np.ndarray) -> np.ndarray:
        """Which of these span rows lie in complete traces."""
        return self.row_complete[rows] if len(rows) else np.zeros(0, bool)

    def as_dict(self) -> dict[str, Any]:
        return {"traces": self.traces, "complete": self.complete,
                "incomplete": self.incomplete, "missing_parents": self.missing_parents,
                "cut_calls": self.cut_calls,
                "client_calls": self.clients, "unanswered_calls": self.unanswered_clients,
                "sampled": self.detected, "signals": list(self.signals)}


def sentence(c: Mapping[str, Any] | None) -> str:
    """One line for the terminal and Markdown reports."""
    if not c or not c.get("traces"):
        return ""
    text = f"{c['complete']} of {c['traces']} traces complete"
    if c["incomplete"]:
        text += (f"; {c['incomplete']} incomplete (a parent or a callee's spans never "
                 "arrived): per-request counts use complete traces only")
    if c.get("sampled"):
        text += ". Sampled run: " + "; ".join(c["signals"])
    return text + "."


def assess(ix: RunIndex, requests: int | None = None) -> Completeness:
    """Completeness of every trace of a run, and the signs of sampling.

    `requests`: how many requests the load tool sent in this run, if known (run metadata);
    far fewer traces than requests is what head sampling looks like from outside.
    Cheap on a whole run: only the spans whose parent is missing (usually none or a few)
    and the roots of their traces are looked at by trace id."""
    out = Completeness(row_complete=np.ones(ix.n, bool))
    if ix.n == 0:
        return out
    has_parent = ix.has_parent
    orphan = (ix.parent < 0) & has_parent
    out.traces = ix.n_traces
    bad: set[str] = set()
    if orphan.any():
        rows = np.flatnonzero(orphan)
        o_tids = ix.strings("trace_id", rows).to_numpy(zero_copy_only=False)
        o_pids = ix.take("parent_span_id", rows).to_numpy(zero_copy_only=False)
        missing: dict[str, set[str]] = {}
        for tid, pid in zip(o_tids, o_pids, strict=True):
            missing.setdefault(tid, set()).add(pid)
        cand = pa.array(sorted(missing), pa.string())
        roots = ix.strings("trace_id", np.flatnonzero(~has_parent))
        rooted = set(pc.filter(roots, pc.is_in(roots, cand)).to_pylist())
        bad = {tid for tid, pids in missing.items() if len(pids) > 1 or tid in rooted}
        entry = {tid for tid, pids in missing.items() if len(pids) == 1 and tid not in rooted}
        out.missing_parents = int(sum(1 for tid in o_tids if tid not in entry))

    # Calls nobody answered in this trace, to a callee that answers the same calls in other
    # traces: the callee's spans were cut (sampled, dropped, or sent to another trace).
    kind_codes, kinds = ix.codes("kind")
    sys_codes, systems = ix.codes("db_system")
    db_or_cache = np.array([bool(s) for s in systems] + [False], bool)[sys_codes]  # (-1: null)
    client = np.isin(kind_codes, [i for i, k in enumerate(kinds) if k == "client"]) & \
        ~db_or_cache
    server = np.isin(kind_codes, [i for i, k in enumerate(kinds) if k in ("server", "consumer")])
    answered = np.zeros(ix.n, bool)
    par = ix.parent[server]
    answered[par[par >= 0]] = True
    out.clients = int(client.sum())
    unanswered = client & ~answered
    out.unanswered_clients = int(unanswered.sum())
    if out.unanswered_clients and ix.source is not None:
        # over the store's files: only the unanswered calls come back from DuckDB
        rows = np.flatnonzero(unanswered)
        out.cut_calls, cut_traces = ix.source.cut_calls(
            ix.strings("trace_id", rows), ix.strings("span_id", rows), _PEER_SQL)
        bad |= set(cut_traces)
    elif out.unanswered_clients:
        calls = np.flatnonzero(client)
        keys = _call_keys(ix, calls)
        served = set(keys[answered[calls]])
        cut = unanswered[calls] & np.isin(keys, list(served))
        out.cut_calls = int(cut.sum())
        if out.cut_calls:
            bad |= set(ix.strings("trace_id", calls[cut]).to_pylist())
    if bad:
        out.row_complete = ~ix.in_traces(bad)
    out.complete = out.traces - len(bad)
    if out.clients >= MIN_CALLS and out.unanswered_clients > UNANSWERED_SHARE * out.clients:
        out.signals.append(f"{out.unanswered_clients} of {out.clients} client calls have no "
                           "server span answering them in their trace")

    if requests and out.traces < SENT_SHARE * requests:
        out.signals.append(f"the load sent {requests} requests but {out.traces} traces "
                           "arrived: the services sample (or drop) whole traces")
    hits = ix.attributes_matching(_SIGNAL_KEYS, _SIGNAL_WORDS)
    if len(hits):
        n_sampler = int(pc.sum(pc.match_substring_regex(hits, _SAMPLER_KEYS.pattern)).as_py()
                        or 0)
        if n_sampler:
            out.signals.append(f"sampler attributes on {n_sampler} span(s)")
        states = pc.filter(hits, pc.match_substring(hits, f'"{TRACESTATE_ATTR}"'))
        if len(states):
            found = [s for s in _tracestates(states) if _OT_SAMPLING.search(s)]
            if found:
                some = "" if len(states) <= 1000 else "at least "
                out.signals.append(f"OpenTelemetry sampling keys in tracestate on {some}"
                                   f"{len(found)} span(s) (e.g. {found[0]!r})")

    return out


#: The host:port a client span called, from its URL (old or stable attribute name).
_PEER = r'"(?:url\.full|http\.url)":"[a-zA-Z]+://(?P<peer>[^/"?#]+)'
#: The same, as DuckDB's regexp_extract takes it (the host:port is group 1).
_PEER_SQL = _PEER.replace("?P<peer>", "")


def _call_keys(ix: RunIndex, rows: np.ndarray) -> np.ndarray:
    """Caller service, span name and the host:port called, per client span row."""
    matched = pc.extract_regex(ix.attributes(rows), _PEER)
    peer = pc.fill_null(pc.struct_field(matched, "peer"), "")
    key = pc.binary_join_element_wise(ix.strings("service", rows), ix.strings("name", rows),
                                      peer, "|")
    return key.to_numpy(zero_copy_only=False)


def _tracestates(rows: pa.Array | pa.ChunkedArray) -> list[str]:
    import json

    out = []
    for raw in rows.slice(0, 1000).to_pylist():
        try:
            out.append(str(json.loads(raw).get(TRACESTATE_ATTR, "")))
        except ValueError:
            continue
    return out
