"""Exception type of the SUT: something stopped it from starting or answering (CLI exit 2)."""

from __future__ import annotations


class SutError(Exception):
    """The SUT could not run; the message is one line naming what, where and what to do."""
