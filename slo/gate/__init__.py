"""`slo gate`: collector, a target with two sides, interleaved load slices, check, reports.

`core` orchestrates; one module per target (`sut`, `commands`, `urls`) behind the small
interface of `base.Target`; `procs` holds the gate's errors, probes and signals, and
`slo.supervisor` starts and stops the child process groups. Only `sut` imports the bundled SUT.
"""

from __future__ import annotations

import time  # noqa: F401 - tests pin the clock through slo.gate.time

from slo.gate.core import Gate, GateConfig, make_target, plan_slices, run_gate
from slo.gate.procs import GateError, Interrupted
from slo.pipeline import embedded_spec_path, resolve_spec_path, summary_text, wait_for_spans
from slo.ports import free_port_range

__all__ = [
    "Gate", "GateConfig", "GateError", "Interrupted", "embedded_spec_path", "free_port_range",
    "make_target", "plan_slices", "resolve_spec_path", "run_gate", "summary_text",
    "wait_for_spans",
]
