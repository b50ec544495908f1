"""The URL target: two deployments that are already running (two compose projects, two hosts).

They export OTLP to the gate's collector themselves (`--otlp-port`, 4318 by default in this
mode, so an ordinary OTEL_EXPORTER_OTLP_ENDPOINT=http://<gate host>:4318 reaches it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slo.gate.base import Target
from slo.gate.procs import GateError, http_status

if TYPE_CHECKING:
    from slo.gate.core import Gate


def health_url(base: str, health: str) -> str:
    return base.rstrip("/") + "/" + health.lstrip("/")


def healthy(status: int | None) -> bool:
    """Any HTTP answer below 500 means the service is up (a 404 on `/` is still an answer)."""
    return status is not None and status < 500


def answers(url: str) -> Callable[[], bool]:
    """A readiness probe for `Gate.wait_until`: does `url` answer (below 500)?"""
    return lambda: healthy(http_status(url))


class UrlsTarget(Target):
    kind = "urls"

    def __init__(self, baseline_url: str, candidate_url: str, health: str = "/",
                 timeout: float = 60.0) -> None:
        for name, url in (("--baseline-url", baseline_url), ("--candidate-url", candidate_url)):
            if not url.startswith(("http://", "https://")):
                raise GateError(f"{name} {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
        self.urls = {"baseline": baseline_url.rstrip("/"), "candidate": candidate_url.rstrip("/")}
        self.health = health
        self.timeout = timeout

    def start(self, gate: Gate) -> None:
        pass  # already running

    def ready(self, gate: Gate) -> None:
        for side, url in self.urls.items():
            target = health_url(url, self.health)
            gate.say(f"waiting for the {side} at {target}")
            gate.wait_until(f"{side} {target}", answers(target), [],
                            self.timeout)

    def host(self, side: str) -> str:
        return self.urls[side]

    def describe(self, side: str) -> dict[str, Any]:
        return {"url": self.urls[side]}
