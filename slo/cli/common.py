"""Click commands of `slo`, one module per command; `slo/cli/__init__.py` assembles them."""

from __future__ import annotations

import click


class CannotRun(click.ClickException):
    """The command could not run at all (bad flags, bad spec, unreadable source): exit 2.

    Exit 1 is reserved for "ran, and the verdict is fail".
    """

    exit_code = 2
