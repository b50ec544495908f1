"""What the gate needs from a target: two sides it can send load to, and how to switch.

A target is the system under judgement with a baseline and a candidate side. The gate owns
the collector, Locust, the slices and the check; a target only

- `start(gate)`: launches both sides (through `gate.spawn`, so the gate stops them),
- `ready(gate)`: returns once both answer (the gate starts Locust in between when the sides
  are separate deployments: Locust's start-up then overlaps theirs),
- `host(side)`: the base URL the side's requests go to,
- `switch(side)`: runs in the quiet gap before each slice of that side (the SUT flips its bugs
  here; two separate deployments need nothing),
- `stop()`: anything beyond the processes the gate already stops.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slo.gate.core import Gate

SIDES = ("baseline", "candidate")


class Target(ABC):
    """One kind of system under judgement (see the module docstring)."""

    kind: str = ""
    #: True when the sides are two deployments: Locust's requests follow the slice's host
    separate_hosts: bool = True
    #: seconds without new spans after the load (and Locust's exit) before the check reads:
    #: longer than the target's exporters' batch delay; 1 s when the gate does not set it
    span_settle: float = 1.0
    #: True when stopping the target exports every span it recorded (an OTel SDK flushes its
    #: batch processor at shutdown) and its processes exit only after that: the gate then stops
    #: the target once Locust has exited and reads when it is gone, instead of waiting for
    #: `span_settle` of quiet. This lets the target export in long batches during the load.
    flushes_on_stop: bool = False
    #: True when both sides run on this machine: their spans' start times are on the gate's
    #: clock, so the warm-up can count from the first request that flowed end to end
    #: (remote sides' clocks may be off by more than the wait for that request to be seen)
    local: bool = False

    @abstractmethod
    def start(self, gate: Gate) -> None: ...

    def ready(self, gate: Gate) -> None:  # noqa: B027 - optional hook
        """Wait until both sides answer (`start` may have done it already)."""

    @abstractmethod
    def host(self, side: str) -> str: ...

    def switch(self, side: str) -> None:  # noqa: B027 - optional hook, nothing by default
        """Before a slice of `side` (inside the gap in which no request carries a run id)."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """After the load (the gate stops its child processes itself)."""

    def default_locustfile(self) -> str | None:
        """The Locust file when none is given (only the SUT brings its own)."""
        return None

    def default_spec(self) -> str | None:
        """The spec when neither --spec nor ./slo.yaml gives one."""
        return None

    def describe(self, side: str) -> dict[str, Any]:
        """What the report records about a side (bugs, command, URL)."""
        return {}

    def locust_env(self) -> dict[str, str]:
        """Extra environment for the Locust process."""
        return {}
