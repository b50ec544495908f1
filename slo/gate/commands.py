"""The commands target: the gate starts two deployments of the user's system side by side.

`--baseline-cmd` and `--candidate-cmd` are shell commands. `{port}` in them becomes a free
port the gate picked (also exported as `PORT`); `OTEL_EXPORTER_OTLP_ENDPOINT` points at the
gate's collector (OTLP/HTTP), so `opentelemetry-instrument ...` needs nothing else.
`OTEL_SERVICE_NAME` is the user's. Each command runs in its own process group in the
caller's directory; the gate polls `--health` until an HTTP answer below 500 arrives, and a
command that exits first, or never answers, ends the gate (exit 2) with its last lines.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from slo.gate.base import SIDES, Target
from slo.gate.procs import GateError, Proc
from slo.gate.urls import answers, health_url
from slo.ports import free_port

if TYPE_CHECKING:
    from slo.gate.core import Gate

#: OTel settings that make a zero-code service export promptly and only what the gate reads;
#: the user's own environment wins
OTEL_DEFAULTS = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_BSP_SCHEDULE_DELAY": "200",
}


class CommandsTarget(Target):
    kind = "commands"
    local = True

    def __init__(self, baseline_cmd: str, candidate_cmd: str, health: str = "/",
                 timeout: float = 60.0) -> None:
        for name, cmd in (("--baseline-cmd", baseline_cmd), ("--candidate-cmd", candidate_cmd)):
            if not cmd.strip():
                raise GateError(f"{name} is empty; give the shell command that starts that side")
        self.cmds = {"baseline": baseline_cmd, "candidate": candidate_cmd}
        self.health = health
        self.timeout = timeout
        self.ports: dict[str, int] = {}
        self.procs: dict[str, Proc] = {}

    def start(self, gate: Gate) -> None:
        for side in SIDES:
            port = free_port()
            self.ports[side] = port
            cmd = self.cmds[side].replace("{port}", str(port))
            env = gate.env()
            for key, value in OTEL_DEFAULTS.items():
                env.setdefault(key, value)
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = gate.collector_url
            env["PORT"] = str(port)
            gate.say(f"starting the {side} on :{port}: {cmd}")
            self.procs[side] = gate.spawn(side, cmd, env, cwd=os.getcwd(), shell=True)

    def ready(self, gate: Gate) -> None:
        for side in SIDES:
            url = health_url(self.host(side), self.health)
            gate.wait_until(f"the {side} ({url})", answers(url),
                            [self.procs[side]], self.timeout)

    def host(self, side: str) -> str:
        return f"http://127.0.0.1:{self.ports[side]}"

    def describe(self, side: str) -> dict[str, Any]:
        return {"cmd": self.cmds[side], "port": self.ports.get(side)}
