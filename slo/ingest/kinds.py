"""OTLP span kinds by number and by the names tables and specs use. Apart from
`slo.ingest.spans` so that reading a spec (`slo gate`'s first step) does not load pyarrow."""

from __future__ import annotations

#: OTLP SpanKind numbers to the names used in the table and in specs.
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
KIND_NAMES = set(KINDS.values())
