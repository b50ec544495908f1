"""The `sut` command: start the system under test, switch its bugs. Parsing and messages only;
the work is in sut.runner and the services' /admin/bugs."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from sut import SERVICES
from sut.bugs import BUGS, UnknownBug, validate
from sut.config import (
    DEFAULT_BASE_PORT,
    DEFAULT_DATA_DIR,
    DEFAULT_HOST,
    Settings,
    peer_urls_from_env,
    split_names,
)
from sut.errors import SutError


class CouldNotRun(click.ClickException):
    """One line, exit 2: the SUT could not start or could not be reached."""

    exit_code = 2


def _bug_list(value: str | None) -> list[str]:
    try:
        return validate(split_names(value))
    except UnknownBug as e:
        raise click.BadParameter(str(e)) from None


base_port_option = click.option("--base-port", envvar="SUT_BASE_PORT", type=click.IntRange(1, 65531),
                                default=DEFAULT_BASE_PORT, show_default=True,
                                help="order = base, user = +1, product = +2, inventory = +3, promotion = +4")
host_option = click.option("--host", envvar="SUT_HOST", default=DEFAULT_HOST, show_default=True,
                           help="address the services bind")
data_dir_option = click.option("--data-dir", envvar="SUT_DATA_DIR", default=DEFAULT_DATA_DIR,
                               show_default=True, type=click.Path(file_okay=False),
                               help="SQLite file, bug state and admin token live here")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The system under test: five traced Flask services with switchable bugs."""


def _server_options(func):  # type: ignore[no-untyped-def]
    """The options `up` and `serve` share, each declared once with its env var."""
    options = [
        click.option("--db", "db_url", envvar="SUT_DB", default="",
                     help="postgresql://... or a SQLite path [default: DATA_DIR/sut.db]"),
        click.option("--cache", "cache_url", envvar="SUT_CACHE", default="memory",
                     show_default=True, help="stock cache: memory or redis://host:port/db"),
        click.option("--cache-ttl", envvar="SUT_CACHE_TTL", type=click.FloatRange(0.1, 86400),
                     default=60.0, show_default=True, help="seconds a cached stock figure stays fresh"),
        click.option("--bugs", "bug_names", envvar="SUT_BUGS", default="",
                     help=f"bugs switched on at start, comma-separated: {', '.join(BUGS)}"),
        base_port_option,
        host_option,
        click.option("--workers", envvar="SUT_WORKERS", type=click.IntRange(1, 32), default=1,
                     show_default=True, help="gunicorn workers per service"),
        click.option("--threads", envvar="SUT_THREADS", type=click.IntRange(1, 64), default=8,
                     show_default=True, help="threads per gunicorn worker (gthread)"),
        data_dir_option,
        click.option("--token", envvar="SUT_ADMIN_TOKEN", default="",
                     help="admin token for /admin/bugs [default: generated and printed]"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _up_options(db_url: str, cache_url: str, cache_ttl: float, bug_names: str, base_port: int,
                host: str, workers: int, threads: int, data_dir: str, token: str) -> object:
    from sut.runner import UpOptions

    peer = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    settings = Settings(data_dir=Path(data_dir), db_url=db_url, cache_url=cache_url,
                        bugs=_bug_list(bug_names), admin_token=token, host=peer,
                        base_port=base_port, cache_ttl=cache_ttl,
                        cache_prefix=os.environ.get("SUT_CACHE_PREFIX") or "sut:")
    # peers may live elsewhere (containers): SUT_USER_URL, ... override the computed URLs
    settings.urls.update(peer_urls_from_env())
    return UpOptions(settings=settings, bind_host=host, workers=workers, threads=threads)


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


@main.command()
@_server_options
def up(**kwargs: object) -> None:
    """Start all five services, print their URLs once healthy, stop them on Ctrl-C/SIGTERM."""
    from sut.runner import up as run_up

    try:
        code = run_up(_up_options(**kwargs), echo=_echo)  # type: ignore[arg-type]
    except SutError as e:
        raise CouldNotRun(str(e)) from None
    sys.exit(code)


@main.command()
@click.argument("service", type=click.Choice(list(SERVICES)))
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="port to bind [default: the service's port from --base-port]")
@_server_options
def serve(service: str, port: int | None, **kwargs: object) -> None:
    """Run ONE service under gunicorn in the foreground (one per container).

    Same options as `up`; peers elsewhere are found through SUT_USER_URL, SUT_PRODUCT_URL, ...
    The database is seeded first unless it is already (several services starting together
    are safe: seeding takes a lock)."""
    from sut.runner import serve as run_serve

    if port:
        kwargs["base_port"] = port - SERVICES[service]
    try:
        run_serve(service, _up_options(**kwargs), echo=_echo)  # type: ignore[arg-type]
    except SutError as e:
        raise CouldNotRun(str(e)) from None


@main.command()
@click.argument("action", type=click.Choice(["enable", "disable", "list"]))
@click.argument("names", nargs=-1)
@base_port_option
@host_option
@data_dir_option
@click.option("--token", envvar="SUT_ADMIN_TOKEN", default="",
              help="admin token [default: the one `sut up` saved in DATA_DIR]")
def bugs(action: str, names: tuple[str, ...], base_port: int, host: str, data_dir: str,
         token: str) -> None:
    """Switch bugs on every service at run time: enable|disable NAMES..., or list."""
    wanted = _bug_list(",".join(names))
    if action != "list" and not wanted:
        raise click.UsageError(f"name at least one bug to {action}: {', '.join(BUGS)}")
    peer = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    settings = Settings(data_dir=Path(data_dir), admin_token=token, host=peer, base_port=base_port)
    settings.urls.update(peer_urls_from_env())  # services elsewhere: SUT_USER_URL, ...
    token = settings.token()
    if not token:
        raise CouldNotRun(f"no admin token: pass --token, set SUT_ADMIN_TOKEN, or run `sut up` "
                          f"with --data-dir {data_dir}")
    body = None if action == "list" else json.dumps({action: wanted}).encode()
    seen: dict[str, list[str]] = {}
    for service in SERVICES:
        url = settings.urls[service] + "/admin/bugs"
        req = urllib.request.Request(url, data=body, method="GET" if body is None else "POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                seen[service] = json.loads(r.read())["bugs"]
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("error", "")
            except ValueError:
                detail = ""
            raise CouldNotRun(f"{service} at {url} answered {e.code}: {detail}") from None
        except (OSError, ValueError, KeyError) as e:
            raise CouldNotRun(f"cannot reach {service} at {url} ({e}); is `sut up` running "
                              f"with --base-port {base_port}?") from None
    states = {tuple(v) for v in seen.values()}
    if len(states) == 1:
        click.echo(f"bugs: {', '.join(states.pop()) or 'none'}")
    else:
        for service, on in seen.items():
            click.echo(f"{service}: {', '.join(on) or 'none'}")
