"""`slo collect` (OTLP receiver writing the span store) and `slo runs` (what the store holds)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

import click

from slo.cli.common import CannotRun
from slo.errors import SloError

if TYPE_CHECKING:
    from slo.ingest.collector import Running

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024, "m": 10**6,
          "mb": 10**6, "mi": 2**20, "mib": 2**20, "g": 10**9, "gb": 10**9, "gi": 2**30,
          "gib": 2**30}


def parse_size(text: str) -> int:
    """'20MiB', '512k', '1048576' -> bytes."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 20MiB, 512KiB, 1000000)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


class _Size(click.ParamType):
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


store_option = click.option(
    "--store", envvar="SLO_STORE", default=".slo/store", show_default=True,
    help="Span store directory.",
)


@click.command("collect")
@store_option
@click.option("--host", envvar="SLO_HOST", default="127.0.0.1", show_default=True,
              help="Address to listen on (both protocols).")
@click.option("--port", envvar="SLO_PORT", type=int, default=4318, show_default=True,
              help="OTLP/HTTP port (0: any free port).")
@click.option("--grpc-port", envvar="SLO_GRPC_PORT", type=int, default=4317,
              show_default=True, help="OTLP/gRPC port (0: any free port, -1: no gRPC).")
@click.option("--run-id", envvar="SLO_RUN_ID", default="",
              help="Run that spans without a slo.run_id attribute belong to.")
@click.option("--token", envvar="SLO_TOKEN", default=None,
              help="Require 'Authorization: Bearer TOKEN' on both protocols.")
@click.option("--forward", envvar="SLO_FORWARD", default=None,
              help="Also send everything received to this OTLP/HTTP endpoint.")
@click.option("--max-body", envvar="SLO_MAX_BODY", type=_Size(), default="20MiB",
              show_default=True, help="Largest request body, after decompression.")
@click.option("--decoders", envvar="SLO_DECODERS", type=click.IntRange(min=-1), default=-1,
              help="Decoder processes started once spans stream in (-1, the default: one "
              "per core, at most 4; 0: decode in the collector's own process).")
def command(store: str, host: str, port: int, grpc_port: int, run_id: str, token: str | None,
            forward: str | None, max_body: int, decoders: int) -> None:
    """Receive OTLP traces (HTTP /v1/traces and gRPC) and write them to the span store.

    Prints one 'listening' line when both receivers are ready; SIGTERM or Ctrl-C stops it
    after flushing every span to Parquet.
    """
    from slo.ingest.collector import CollectorConfig, serve

    config = CollectorConfig(store=store, host=host, port=port, grpc_port=grpc_port,
                             run_id=run_id, token=token or None, forward=forward or None,
                             max_body=max_body, decoders=decoders)
    try:
        stats = serve(config, ready=_announce)
    except (OSError, SloError) as e:
        raise CannotRun(f"slo collect: {e}") from None
    click.echo(f"slo collect stopped: {stats.spans} spans stored from {stats.requests} "
               f"requests, {stats.rejected_spans} spans rejected, {stats.bad_requests} bad "
               f"requests, {stats.throttled} throttled", err=True)


def _announce(running: Running) -> None:
    import sys

    click.echo(running.describe(), nl=True)
    sys.stdout.flush()


def _time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@click.command("runs")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON ({\"version\": 1, ...}).")
def runs_command(store: str, as_json: bool) -> None:
    """List the runs in the span store: spans, traces and time range of each."""
    from slo.ingest.store import SpanStore

    try:
        runs = SpanStore(store).runs()
    except SloError as e:
        raise CannotRun(str(e)) from None
    if as_json:
        click.echo(json.dumps({"version": 1, "store": store,
                               "runs": [r.to_dict() for r in runs]}, indent=2))
        return
    if not runs:
        click.echo(f"no spans in {store}")
        return
    header = f"{'run id':<28} {'spans':>9} {'traces':>8}  {'first span (UTC)':<23}  duration"
    click.echo(header)
    for r in runs:
        name = r.run_id or "(no run id)"
        secs = max(0, r.end_ns - r.start_ns) / 1e9
        click.echo(f"{name:<28} {r.spans:>9} {r.traces:>8}  {_time(r.start_ns):<23}  "
                   f"{secs:.1f}s")


EXTRA_COMMANDS = [runs_command]
