"""`sut up`: check ports and database, seed once, start the five services under gunicorn, wait
until each answers /healthz, and stop them all cleanly (flushing spans) on SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import http.client
import importlib
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from slo.supervisor import Proc, Supervisor, handle_signals
from sut import SERVICES, bugs, db, seed
from sut.cache import check_redis
from sut.config import Settings
from sut.errors import SutError

DEFAULT_THREADS = 8
START_TIMEOUT = 90.0


@dataclass
class UpOptions:
    settings: Settings
    bind_host: str = "127.0.0.1"
    workers: int = 1
    threads: int = DEFAULT_THREADS
    extra_env: dict[str, str] = field(default_factory=dict)


def check_port(host: str, port: int, service: str) -> None:
    """SutError unless `port` can be bound. SO_REUSEADDR as gunicorn does: connections left in
    TIME_WAIT by a previous run do not count, a listener does."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise SutError(
                f"port {port} ({service}) on {host} is not available ({e.strerror}); "
                "stop what uses it or pick another --base-port") from None


def ensure_token(settings: Settings) -> tuple[str, bool]:
    """The admin token (generated when none is set), written to the data dir for `sut bugs`."""
    token, generated = settings.admin_token, False
    if not token:
        token, generated = secrets.token_urlsafe(18), True
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.token_path
    path.write_text(token + "\n")
    path.chmod(0o600)
    settings.admin_token = token
    return token, generated


def prepare(settings: Settings) -> bool:
    """Check the cache and database, seed once, and set the starting bugs (index included).

    Returns True when this call seeded the database."""
    if settings.cache_url not in ("", "memory", "memory://"):
        check_redis(settings.cache_url)
    db.raw_connect(settings.db_url).close()
    seeded = seed.ensure_seeded(settings.db_url)
    bugs.write_state(settings.bugs_path, settings.bugs)
    want_index = "missing_index" not in settings.bugs
    if db.inventory_index_present(settings.db_url) != want_index:
        db.set_inventory_index(settings.db_url, want_index)
    return seeded


def service_env(opts: UpOptions) -> dict[str, str]:
    s = opts.settings
    env = dict(os.environ)
    env.update({
        "SUT_DB": s.db_url, "SUT_CACHE": s.cache_url, "SUT_DATA_DIR": str(s.data_dir),
        "SUT_ADMIN_TOKEN": s.admin_token, "SUT_BASE_PORT": str(s.base_port),
        "SUT_HOST": opts.bind_host, "SUT_CACHE_TTL": str(s.cache_ttl),
        "SUT_CACHE_PREFIX": s.cache_prefix, "SUT_BUGS": ",".join(s.bugs),
    })
    for name, url in s.urls.items():
        env["SUT_" + name.split("-")[0].upper() + "_URL"] = url
    env.update(opts.extra_env)
    return env


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def gunicorn_settings(service: str, opts: UpOptions) -> dict[str, str | int]:
    """gunicorn's settings for one service, by their names in gunicorn's config."""
    return {
        "bind": f"{_bracket(opts.bind_host)}:{opts.settings.port(service)}",
        "workers": opts.workers, "worker_class": "gthread", "threads": opts.threads,
        "graceful_timeout": 10, "timeout": 60, "loglevel": "warning", "proc_name": service,
    }


#: gunicorn_settings' names -> gunicorn's command-line flags
GUNICORN_FLAGS = {"bind": "--bind", "workers": "--workers", "worker_class": "--worker-class",
                  "threads": "--threads", "graceful_timeout": "--graceful-timeout",
                  "timeout": "--timeout", "loglevel": "--log-level", "proc_name": "--name"}


def gunicorn_command(service: str, opts: UpOptions) -> list[str]:
    """The same service as a gunicorn command line (`sut serve`, one service per container)."""
    argv = [sys.executable, "-m", "gunicorn"]
    for key, value in gunicorn_settings(service, opts).items():
        argv += [GUNICORN_FLAGS[key], str(value)]
    return argv + [f'sut.app:create_app("{service}")']


#: what `preload_services` imports (tests/sut/test_runner.py: a worker imports little else)
PRELOADED = (
    "gunicorn.app.base", "gunicorn.arbiter", "gunicorn.workers.gthread",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.sdk.trace.export",
    "opentelemetry.instrumentation.flask", "opentelemetry.instrumentation.requests",
    "opentelemetry.instrumentation.sqlite3", "requests", "netrc", "sut.metrics",
    "sut.app", *(f"sut.services.{name.split('-')[0]}" for name in SERVICES),
)


def preload_services(settings: Settings | None = None) -> None:
    """Import, in `sut up`, what every service's processes import: gunicorn, Flask, the
    OpenTelemetry SDK, exporter and instrumentations, the drivers. The five gunicorn masters
    are forked from this process (`Stack.start`), and their workers from them, so each
    imports nothing again: that was five interpreters importing gunicorn and five importing
    the app, ~3 CPU-s before the SUT answered, on a 2-core box the largest part of a gate's
    start-up (issue 12).

    Imports only: no tracer provider, exporter thread or connection exists before the fork;
    every worker builds its own after it (`sut.app.create_app`), as OpenTelemetry's gunicorn
    guidance asks. Not prometheus_client: it picks its multiprocess mode from the
    environment when imported, and each service's comes with its own directory
    (`sut.metrics`). PostgreSQL's and Redis's clients and instrumentations when `settings`
    use them."""
    modules = list(PRELOADED)
    if settings is not None and db.is_postgres(settings.db_url):
        modules += ["psycopg", "opentelemetry.instrumentation.psycopg"]
    if settings is not None and settings.cache_url.startswith("redis"):
        modules += ["redis", "opentelemetry.instrumentation.redis"]
    for module in modules:
        importlib.import_module(module)


#: longest sleep of a stopping gunicorn master between two looks at its workers
STOP_POLL = 0.01


def prompt_arbiter() -> type:
    """gunicorn's master (`Arbiter`), stopping as soon as its workers have exited.

    Its `stop` waits for the workers in `time.sleep(0.1)` steps and sleeps once more after
    reaping the last: a worker that flushes its spans and exits in 10 ms still kept its
    master 0.2 s, and the gate waits for the SUT's exit after every load. While it stops, the
    master's sleeps are at most STOP_POLL; everything else is gunicorn's own stop."""
    import types

    import gunicorn.arbiter as arbiter

    prompt = types.ModuleType("time")
    prompt.__dict__.update(vars(time))
    prompt.sleep = lambda seconds: time.sleep(min(seconds, STOP_POLL))  # type: ignore[attr-defined]

    class PromptArbiter(arbiter.Arbiter):  # type: ignore[misc]
        def stop(self, graceful: bool = True) -> None:
            arbiter.time = prompt  # type: ignore[attr-defined]
            try:
                super().stop(graceful)
            finally:
                arbiter.time = time  # type: ignore[attr-defined]

    return PromptArbiter


def serve_forked(service: str, opts: UpOptions) -> int:
    """In a child forked by `Stack.start`: run one service's gunicorn master (which forks its
    workers; each builds the app, and its tracer provider, after that fork)."""
    from gunicorn.app.base import BaseApplication

    settings = gunicorn_settings(service, opts)
    arbiter = prompt_arbiter()

    class ServiceApp(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> object:
            from sut.app import create_app

            return create_app(service)

        def run(self) -> None:  # BaseApplication.run, with the prompt arbiter
            try:
                arbiter(self).run()
            except RuntimeError as e:
                print(f"\nError: {e}\n", file=sys.stderr, flush=True)
                sys.exit(1)

    ServiceApp().run()  # gunicorn's arbiter: returns by SystemExit when it stops
    return 0


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when `sut up` dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
            return r.status == 200
    except (OSError, http.client.HTTPException):  # a self-connected probe reads its own request
        return False


class Stack:
    """The five gunicorn masters under one supervisor, their output on ours, each forked from
    this process after `preload_services` (see there why).

    Each master gets SIGTERM alone (it stops its workers in order, so they flush their spans);
    whatever is left of a master's process group after the timeout is SIGKILLed.
    """

    def __init__(self, opts: UpOptions) -> None:
        self.opts = opts
        self.supervisor = Supervisor(error=SutError)
        self.procs: dict[str, Proc] = {}

    def start(self) -> None:
        from sut.metrics import multiprocess_env

        preload_services(self.opts.settings)
        # what was imported lives as long as the processes: out of the garbage collector's
        # sight, so that no collection in a child writes to (copies) the pages it shares with
        # this process (CPython's advice for fork servers), and this process's own exit
        # skips its last full collection (0.17 -> 0.03 s, and the gate waits for that exit)
        gc.freeze()
        env = service_env(self.opts)
        for service in SERVICES:
            self.procs[service] = self.supervisor.fork(
                service, lambda service=service: serve_forked(service, self.opts),  # type: ignore[misc]
                {**env, **multiprocess_env(self.opts.settings.data_dir, service)},
                term_leader_only=True, preexec_fn=_die_with_parent)

    def wait_healthy(self, timeout: float = START_TIMEOUT,
                     stop: Callable[[], bool] = lambda: False) -> None:
        pending = dict(self.opts.settings.urls)

        def all_healthy() -> bool:
            for service in list(pending):
                if healthy(pending[service]):
                    del pending[service]
            return not pending

        self.supervisor.wait_until(lambda: f"{', '.join(pending)} (/healthz)", all_healthy,
                                   self.procs.values(), timeout, interval=0.2, cancel=stop)

    def stop(self, timeout: float = 15.0) -> None:
        self.supervisor.stop(timeout=timeout)

    def any_exited(self) -> str | None:
        proc = self.supervisor.first_exited()
        return None if proc is None else f"{proc.name} exited with code {proc.returncode}"


def serve(service: str, opts: UpOptions, echo: Callable[[str], None] = print) -> None:
    """Run one service in the foreground (containers: one service each). Replaces this process
    with gunicorn after the same checks, seeding and bug set-up as `up`."""
    settings = opts.settings
    check_port(opts.bind_host, settings.port(service), service)
    prepare(settings)
    token, generated = ensure_token(settings)
    if generated:
        echo(f"sut: admin token {token} (saved in {settings.token_path})")
    echo(f"{service:<18} http://{opts.bind_host}:{settings.port(service)}")
    sys.stdout.flush()
    from sut.metrics import multiprocess_env

    os.execve(sys.executable, gunicorn_command(service, opts),
              {**service_env(opts), **multiprocess_env(settings.data_dir, service)})


def up(opts: UpOptions, echo: Callable[[str], None] = print) -> int:
    """Run the SUT until SIGTERM/SIGINT; returns the exit code (0 on a clean stop)."""
    settings = opts.settings
    for service in SERVICES:
        check_port(opts.bind_host, settings.port(service), service)
    t0 = time.monotonic()
    if prepare(settings):
        echo(f"sut: seeded {db.redact(settings.db_url)} in {time.monotonic() - t0:.1f} s")
    token, generated = ensure_token(settings)
    if generated:
        echo(f"sut: admin token {token} (saved in {settings.token_path})")
    stop_requested: list[int] = []
    wake = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.append(signum)
        wake.set()  # the wait below returns now, not at its next poll (the gate waits for us)

    stack = Stack(opts)
    with handle_signals(on_signal, (signal.SIGTERM, signal.SIGINT)):
        try:
            stack.start()
            stack.wait_healthy(stop=lambda: bool(stop_requested))
            if not stop_requested:
                for service in SERVICES:
                    echo(f"{service:<18} {settings.urls[service]}")
                echo(f"sut ready: {len(SERVICES)} services, bugs: "
                     f"{','.join(settings.bugs) or 'none'} (Ctrl-C stops)")
            while not stop_requested:
                exited = stack.any_exited()
                if exited:
                    raise SutError(f"{exited}; stopping the others")
                wake.wait(0.2)
            return 0
        finally:
            stack.stop()
