"""Exception types of the `slo` library.

Raised where the fault is found; the CLI turns them into one line and an exit code
(2 for anything that stops the check from running at all).
"""

from __future__ import annotations


class SloError(Exception):
    """Base class: the check could not run (exit 2)."""


class SpecError(SloError):
    """The SLO spec is malformed; the message names file, line and what was expected."""


class SourceError(SloError):
    """A span source (store, OTLP file, Jaeger) could not be read."""


class PayloadError(SloError):
    """An OTLP payload is malformed (the collector answers 400)."""


class BaselineError(SloError):
    """A baseline file is missing, corrupt or of an unknown version."""
