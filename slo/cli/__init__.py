"""The `slo` command: parses arguments, calls the library, formats. Nothing else lives here."""

from __future__ import annotations

import click

from slo.cli import check, collect, gate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SLO"})
@click.version_option(package_name="slo-harness")
def main() -> None:
    """Trace-driven SLO checks: collect spans, check them against a spec and a baseline."""


main.add_command(collect.command)
main.add_command(check.command)
main.add_command(gate.command)
for extra in getattr(collect, "EXTRA_COMMANDS", ()):
    main.add_command(extra)
