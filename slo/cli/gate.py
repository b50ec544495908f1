"""`slo gate`: the CI job (see slo/gate/ for how and why).

Settings come from the flags, else from the spec's `gate:` key (the spec is --spec or
./slo.yaml), else the defaults: a repository can keep its gate in its slo.yaml so that
`slo gate` alone runs it.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from slo.cli.common import CannotRun
from slo.errors import SloError

#: `gate:` key in the spec -> GateConfig field (same name unless listed)
_SPEC_FIELDS = {"slice": "slice_seconds"}
#: the settings of each kind of target: a kind given by flags replaces the spec's other kinds
#: (e.g. --baseline-url ignores the spec's commands; --candidate-cmd alone keeps its baseline_cmd)
_TARGET_KINDS = ({"baseline_cmd", "candidate_cmd"}, {"baseline_url", "candidate_url"}, {"bugs"})


def _bug_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str]:
    from slo.gate.procs import GateError
    from slo.gate.sut import check_bugs

    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    try:
        return check_bugs(names)
    except GateError as e:
        raise click.BadParameter(str(e)) from None


@click.command("gate")
@click.option("--bugs", envvar="SLO_GATE_BUGS", default="", callback=_bug_list,
              help="sut target: bugs to switch on in the candidate slices, comma-separated")
@click.option("--baseline-cmd", envvar="SLO_GATE_BASELINE_CMD", metavar="CMD",
              help="shell command starting the baseline deployment ({port} = a free port, "
              "also $PORT; OTEL_EXPORTER_OTLP_ENDPOINT = the gate's collector)")
@click.option("--candidate-cmd", envvar="SLO_GATE_CANDIDATE_CMD", metavar="CMD",
              help="shell command starting the candidate deployment (as --baseline-cmd)")
@click.option("--baseline-url", envvar="SLO_GATE_BASELINE_URL", metavar="URL",
              help="a running baseline deployment (exports OTLP to the gate's --otlp-port)")
@click.option("--candidate-url", envvar="SLO_GATE_CANDIDATE_URL", metavar="URL",
              help="a running candidate deployment")
@click.option("--health", envvar="SLO_GATE_HEALTH", default="/", show_default=True,
              help="path polled on each side until it answers below HTTP 500")
@click.option("--start-timeout", envvar="SLO_GATE_START_TIMEOUT",
              type=click.FloatRange(min=1.0), default=60.0, show_default=True,
              help="seconds a side may take to answer --health")
@click.option("--otlp-port", envvar="SLO_GATE_OTLP_PORT", type=click.IntRange(1, 65535),
              help="the collector's OTLP/HTTP port (default: a free one; 4318 with --*-url)")
@click.option("--otlp-host", envvar="SLO_GATE_OTLP_HOST", default="127.0.0.1",
              show_default=True, help="address the collector binds (0.0.0.0 for other hosts)")
@click.option("--locustfile", envvar="SLO_GATE_LOCUSTFILE", type=click.Path(dir_okay=False),
              help="any Locust file, unchanged (default: the SUT's journeys, sut target only)")
@click.option("--duration", envvar="SLO_GATE_DURATION", type=click.FloatRange(min=1.0),
              default=12.0, show_default=True, help="seconds of load per side")
@click.option("--users", envvar="SLO_GATE_USERS", type=click.IntRange(min=1), default=8,
              show_default=True, help="Locust users")
@click.option("--baseline", "baseline_file", envvar="SLO_GATE_BASELINE",
              type=click.Path(exists=True, dir_okay=False),
              help="compare against this saved baseline instead of running baseline slices")
@click.option("--keep", envvar="SLO_GATE_KEEP", is_flag=True,
              help="leave the target and the collector running afterwards")
@click.option("--report-dir", envvar="SLO_GATE_REPORT_DIR", default="reports",
              show_default=True, help="where slo-report.* and junit.xml go")
@click.option("--spec", envvar="SLO_GATE_SPEC", type=click.Path(exists=True, dir_okay=False),
              help="SLO spec (default: ./slo.yaml, else the SUT's embedded spec)")
@click.option("--db", envvar="SLO_GATE_DB",
              help="sut target: database URL (default: a private copy of a seeded SQLite file)")
@click.option("--cache", envvar="SLO_GATE_CACHE",
              help="sut target: stock cache URL, e.g. redis://127.0.0.1:6379/0")
@click.option("--slice", "slice_seconds", envvar="SLO_GATE_SLICE", type=click.FloatRange(min=0.5),
              default=0.5, show_default=True,
              help="seconds per interleaved baseline/candidate slice")
@click.option("--warmup", envvar="SLO_GATE_WARMUP", type=click.FloatRange(min=0.0),
              default=3.0, show_default=True, help="seconds of unmeasured load first")
@click.option("--locust-processes", envvar="SLO_GATE_LOCUST_PROCESSES", type=click.IntRange(min=1),
              default=1, show_default=True,
              help="Locust load processes (Locust's --processes: a master and N-1 more workers)")
@click.pass_context
def command(ctx: click.Context, /, **flags: Any) -> None:
    """Start collector and target, run interleaved baseline/candidate load, check, report.

    Targets: the bundled SUT (default, --bugs), two deployments the gate starts
    (--baseline-cmd/--candidate-cmd) or two running ones (--baseline-url/--candidate-url).
    Exit 0 when every objective is met and nothing regressed, 1 when the check fails,
    2 when the gate could not run.
    """
    try:
        from slo.gate import GateConfig, run_gate

        settings = _spec_settings(flags.get("spec"))
        given = {k: v for k, v in flags.items()
                 if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, None)}
        merged = dict(flags)
        for kind in _TARGET_KINDS:
            if given.keys() & kind:
                others = set().union(*_TARGET_KINDS) - kind
                settings = {k: v for k, v in settings.items() if k not in others}
        for key, value in settings.items():
            name = _SPEC_FIELDS.get(key, key)
            if name not in given:
                merged[name] = value
        if merged.get("otlp_port") is None and (merged.get("baseline_url")
                                                 or merged.get("candidate_url")):
            merged["otlp_port"] = 4318
        config = GateConfig(**merged)
        code = run_gate(config, out=lambda line: click.echo(line))
        # the process ends now: its last garbage collection need not walk every object the
        # check's libraries made (0.45 -> 0.05 s of exit with scipy, duckdb and pyarrow
        # loaded); everything still runs its finalizers as usual
        gc.freeze()
    except SloError as e:
        raise CannotRun(str(e)) from e
    except Exception as e:  # outside the verdict every failure is exit 2, in one line
        raise CannotRun(crash_line(e)) from e
    raise SystemExit(code)


def crash_line(e: BaseException) -> str:
    """One line for a failure that is no SloError (OSError, ImportError, a bug): what, where.

    Exit 1 means "the check failed"; a crash must not look like one, nor print a traceback
    that CI logs cut in the middle.
    """
    where = ""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" (in {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno})"
    what = " ".join(str(e).split()) or "no message"
    return f"the gate could not run: {type(e).__name__}: {what}{where}; nothing was judged"


def _spec_settings(spec: str | None) -> dict[str, Any]:
    """The `gate:` settings of --spec or ./slo.yaml (none when neither exists)."""
    path = spec or ("slo.yaml" if Path("slo.yaml").is_file() else None)
    if path is None:
        return {}
    from slo.judge.spec import load_spec

    return dict(load_spec(path).gate)
