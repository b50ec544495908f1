"""`slo gate`: the CI job on embedded defaults (see slo/gate.py for how and why)."""

from __future__ import annotations

import click

from slo.commands import CannotRun
from slo.errors import SloError


def _bug_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str]:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    try:
        from sut.bugs import UnknownBug, validate
    except ImportError:  # pragma: no cover - the SUT ships in the same distribution
        return names
    try:  # sized bugs too: cpu_regression:10
        validate(names)
    except UnknownBug as e:
        raise click.BadParameter(str(e)) from None
    return names


@click.command("gate")
@click.option("--bugs", envvar="SLO_GATE_BUGS", default="", callback=_bug_list,
              help="bugs to switch on in the candidate phase, comma-separated (default none)")
@click.option("--duration", envvar="SLO_GATE_DURATION", type=click.FloatRange(min=1.0),
              default=12.0, show_default=True, help="seconds of load per phase")
@click.option("--users", envvar="SLO_GATE_USERS", type=click.IntRange(min=1), default=8,
              show_default=True, help="Locust users")
@click.option("--baseline", "baseline_file", envvar="SLO_GATE_BASELINE",
              type=click.Path(exists=True, dir_okay=False),
              help="compare against this saved baseline instead of running a baseline phase")
@click.option("--keep", envvar="SLO_GATE_KEEP", is_flag=True,
              help="leave the SUT and the collector running afterwards")
@click.option("--report-dir", envvar="SLO_GATE_REPORT_DIR", default="reports",
              show_default=True, help="where slo-report.* and junit.xml go")
@click.option("--spec", envvar="SLO_GATE_SPEC", type=click.Path(exists=True, dir_okay=False),
              help="SLO spec (default: the embedded one)")
@click.option("--db", envvar="SLO_GATE_DB",
              help="SUT database URL (default: a private copy of a seeded SQLite file)")
@click.option("--cache", envvar="SLO_GATE_CACHE",
              help="SUT stock cache URL, e.g. redis://127.0.0.1:6379/0 (default in-process)")
@click.option("--slice", "slice_seconds", envvar="SLO_GATE_SLICE", type=click.FloatRange(min=0.5),
              default=1.0, show_default=True,
              help="seconds per interleaved baseline/candidate slice")
@click.option("--warmup", envvar="SLO_GATE_WARMUP", type=click.FloatRange(min=0.0),
              default=3.0, show_default=True, help="seconds of unmeasured load first")
@click.option("--locust-processes", envvar="SLO_GATE_LOCUST_PROCESSES", type=click.IntRange(min=1),
              default=1, show_default=True,
              help="Locust load processes (Locust's --processes: a master and N-1 more workers)")
def command(
    bugs: list[str], duration: float, users: int, baseline_file: str | None, keep: bool,
    report_dir: str, spec: str | None, db: str | None, cache: str | None, slice_seconds: float,
    warmup: float, locust_processes: int,
) -> None:
    """Start collector and SUT, run baseline and candidate load, check, write reports.

    Exit 0 when every objective is met and nothing regressed, 1 when the check fails,
    2 when the gate could not run.
    """
    from slo.gate import GateConfig, run_gate

    config = GateConfig(
        bugs=bugs, duration=duration, users=users, baseline_file=baseline_file, keep=keep,
        report_dir=report_dir, spec=spec, db=db, cache=cache, slice_seconds=slice_seconds,
        warmup=warmup, locust_processes=locust_processes,
    )
    try:
        code = run_gate(config, out=lambda line: click.echo(line))
    except SloError as e:
        raise CannotRun(str(e)) from e
    raise SystemExit(code)
