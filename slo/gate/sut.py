"""The sut target: the bundled SUT, one deployment whose bugs switch per slice.

Baseline slices run with no bug, candidate slices with `--bugs`, switched at run time through
`POST /admin/bugs` in the gap before each slice. The only module of the gate that imports
`sut`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slo.gate.base import Target
from slo.gate.procs import GateError, http_ok, python_cmd
from slo.pipeline import embedded_spec_path
from slo.ports import free_port_range

if TYPE_CHECKING:
    from slo.gate.core import Gate


#: the SUT's batch delay (ms) in a gate, which stops it after the load (its shutdown flushes)
LOAD_BATCH_DELAY_MS = "1000"
#: the same when the gate keeps it running (--keep): spans arrive within 200 ms
KEPT_BATCH_DELAY_MS = "200"


def check_bugs(names: list[str]) -> list[str]:
    """`names` if every one is a bug of the bundled SUT, else a GateError listing the valid ones."""
    if not names:
        return names
    try:
        from sut.bugs import UnknownBug, validate
    except ImportError:
        raise GateError("--bugs needs the bundled SUT (pip install 'slo-harness[sut]')") from None
    try:  # sized bugs too: cpu_regression:10
        validate(names)
    except UnknownBug as e:
        raise GateError(str(e)) from None
    return names


def locustfile_path() -> str:
    """The SUT's journeys (loadtests/locustfile.py)."""
    spec = importlib.util.find_spec("loadtests")
    if spec is None or not spec.submodule_search_locations:
        raise GateError("the loadtests package is not installed; install slo-harness[all]")
    return str(Path(next(iter(spec.submodule_search_locations))) / "locustfile.py")


class SutTarget(Target):
    kind = "sut"
    separate_hosts = False
    #: with --keep the SUT outlives the gate and exports every 200 ms (KEPT_BATCH_DELAY_MS):
    #: 3 batch delays of quiet
    span_settle = 0.6
    #: gunicorn stops its workers in order and the SDK flushes at each worker's exit: once `sut
    #: up` has exited, every span the SUT recorded is in the collector's write-ahead log
    flushes_on_stop = True
    local = True
    #: seconds between clearing the run id and flipping the bugs: Locust processes see the
    #: empty id within one poll (50 ms) and the requests already sent with the last slice's
    #: id finish under that slice's bugs, so a baseline slice never holds a request that the
    #: candidate's N+1 served (the gate's gap after the flip covers the services' own
    #: 100 ms re-read of the bug state)
    switch_drain = 0.15

    def __init__(self, bugs: list[str], db: str | None = None, cache: str | None = None,
                 workers: int | None = None) -> None:
        self.bugs = list(bugs)
        self.db = db
        self.cache = cache
        self.workers = workers
        self.token = secrets.token_hex(16)
        self.base_port = 0
        self.db_url = ""
        self.current: list[str] | None = None
        self.gate: Gate | None = None

    def start(self, gate: Gate) -> None:
        self.gate = gate
        self.base_port = free_port_range(5)
        env = gate.env()
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=gate.collector_url,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            SUT_ADMIN_TOKEN=self.token,
        )
        # Exports every second under load: SUT CPU per traced request x0.94-0.96 of 200 ms
        # batches, while the SDK's default 5 s measured x1.02-1.04 (`bench/sut.py`, issue 12).
        # The gate stops the SUT after the load and its shutdown exports the rest
        # (`flushes_on_stop`); with --keep it is not stopped: its spans must come by themselves.
        env["OTEL_BSP_SCHEDULE_DELAY"] = KEPT_BATCH_DELAY_MS if gate.c.keep else LOAD_BATCH_DELAY_MS
        cmd = python_cmd("sut.cli:main") + [
            "up", "--base-port", str(self.base_port), "--data-dir", str(gate.workdir / "sut-data"),
        ]
        if self.db:
            db = self.db if "://" in self.db else str(Path(self.db).resolve())
        else:
            db = str(private_sqlite_db(gate.workdir))
            gate.phase("db copy")  # with the collector's spawn, which it overlaps
        cmd += ["--db", db]
        self.db_url = db
        if self.cache:
            cmd += ["--cache", self.cache]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        gate.say(f"starting SUT on :{self.base_port}-{self.base_port + 4}")
        gate.spawn("sut", cmd, env)

    def ready(self, gate: Gate) -> None:
        """Wait for the five services (Locust starts meanwhile), then bugs off, cache primed."""
        pending = list(range(5))

        def healthy() -> bool:  # a service that answered once is not asked again
            pending[:] = [i for i in pending
                          if not http_ok(f"http://127.0.0.1:{self.base_port + i}/healthz")]
            return not pending

        gate.wait_until("SUT", healthy, list(gate.procs), timeout=180)
        self.admin_bugs([])
        self.current = []
        self.prime_stock_cache()

    def host(self, side: str) -> str:
        return f"http://127.0.0.1:{self.base_port}"

    def switch(self, side: str) -> None:
        bugs = list(self.bugs) if side == "candidate" else []
        if bugs != self.current:
            assert self.gate is not None
            self.gate.sleep(self.switch_drain)
            self.admin_bugs(bugs)
            self._wait_bug_effective(self.current or [], bugs)
            self.current = bugs

    def default_locustfile(self) -> str:
        return locustfile_path()

    def default_spec(self) -> str:
        return embedded_spec_path()  # the SUT's spec

    def describe(self, side: str) -> dict[str, Any]:
        return {"bugs": list(self.bugs) if side == "candidate" else []}

    def locust_env(self) -> dict[str, str]:
        return {"SUT_ADMIN_TOKEN": self.token}

    def admin_bugs(self, bugs: list[str]) -> None:
        """Replace the SUT's bug set (the state is shared by all five services)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.base_port}/admin/bugs",
            data=json.dumps({"bugs": bugs}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise GateError(f"could not switch bugs to {bugs or 'none'} via /admin/bugs: {e}") from e
        got = sorted(body.get("bugs", []))
        if got != sorted(bugs):
            raise GateError(f"/admin/bugs answered {got}, expected {sorted(bugs)}")

    def prime_stock_cache(self) -> None:
        """Load the popular products' stock into inventory's cache before anything is measured.

        Most traffic is on ~100 popular products; left to the load alone the cache is still
        half cold during a short gate, and a request that does or does not query the database
        flips per-request query counts between two values. Primed, misses are the long tail.
        """
        try:
            from sut.seed import HOT_PRODUCTS

            hot = list(HOT_PRODUCTS)
        except ImportError:  # pragma: no cover
            hot = list(range(1, 101))
        for i in range(0, len(hot), 50):
            ids = ",".join(str(p) for p in hot[i : i + 50])
            url = f"http://127.0.0.1:{self.base_port + 3}/stock?product_ids={ids}"
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    resp.read()
            except (urllib.error.URLError, OSError) as e:
                raise GateError(f"could not warm inventory's cache ({url}): {e}") from e

    def _wait_bug_effective(self, before: list[str], after: list[str]) -> None:
        """Wait until a switch has really happened, where that takes time.

        `missing_index` drops and re-creates a real index on 400k rows (up to a second on a
        busy box): a slice started before it is done would measure the other side.
        """
        if ("missing_index" in before) == ("missing_index" in after) or not self.db_url:
            return
        from sut import db as sut_db

        assert self.gate is not None
        want = "missing_index" not in after
        self.gate.wait_until(
            f"inventory index {'re-created' if want else 'dropped'}",
            lambda: sut_db.inventory_index_present(self.db_url) == want,
            list(self.gate.procs), timeout=60,
        )


def private_sqlite_db(workdir: Path) -> Path:
    """A private copy of the seeded SUT database for one gate.

    Seeding takes seconds, so a template is seeded once (in SLO_GATE_SEED_DIR, default
    ~/.cache/slo-harness) and copied with SQLite's backup API (a consistent snapshot, ~25 MB,
    milliseconds). Private because the SUT writes to it (sign-ups) and `missing_index` really
    drops an index: gates running side by side must not share either.
    """
    import fcntl
    import sqlite3

    try:
        from sut import db as sut_db
        from sut import seed
    except ImportError as e:
        raise GateError(f"the SUT package is not importable (install slo-harness[sut]): {e}") from e
    cache = Path(os.environ.get("SLO_GATE_SEED_DIR") or Path.home() / ".cache" / "slo-harness")
    cache.mkdir(parents=True, exist_ok=True)
    template = cache / f"sut-template-seed{getattr(seed, 'SEED_VERSION', '1')}.db"
    with open(cache / f"{template.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            seed.ensure_seeded(str(template))
            sut_db.set_inventory_index(str(template), True)
        except Exception as e:  # SutError or a driver error: one line, exit 2
            raise GateError(f"could not prepare the SUT database {template}: {e}") from e
        dst_path = workdir / "sut.db"
        src = sqlite3.connect(str(template))
        dst = sqlite3.connect(str(dst_path))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    return dst_path
