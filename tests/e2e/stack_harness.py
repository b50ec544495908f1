"""docker-compose.yml's own commands, run as processes on this machine (no Docker engine here).

`HostStack` reads the compose file and starts a service with exactly its command and
environment, changed only where a container differs from a process on a shared host:
  * each `service:port` becomes `127.0.0.1:<free port>` (the five SUT services get a free
    contiguous range, so `sut bugs --base-port` reaches them all), in commands, variables and
    health checks alike, and 0.0.0.0 binds become 127.0.0.1;
  * `/data/...` volumes become folders under the test's directory, and each SUT service gets
    its own data dir, as each container has its own file system;
  * PostgreSQL and Redis are the machine's (the caller passes SUT_DB / SUT_CACHE, with its own
    schema and Redis database so other tests are not disturbed);
  * Jaeger is stood in for by a second `slo collect`, so `--forward` is proven for real.
Health is the compose file's own healthcheck command, run with this Python.

This module holds no tests; the e2e test modules beside it import it by path.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slo.ports import free_port, free_port_range
from slo.supervisor import Proc, Supervisor

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_BASE = "postgresql://127.0.0.1:5432/test"
REDIS_BASE = "redis://127.0.0.1:6379"


def _load_compose_module() -> Any:
    name = "_slo_compose_check"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "test_compose.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


compose = _load_compose_module()
SUT_SERVICES: dict[str, int] = __import__("sut").SERVICES


def pg_url(schema: str) -> str:
    """The machine's PostgreSQL, database `test`, with `schema` first on the search path (the
    SUT creates it and seeds it once)."""
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


class HostStack:
    """The compose services as local processes; see the module docstring."""

    def __init__(self, workdir: Path, *, db_url: str, cache_url: str) -> None:
        self.workdir = workdir
        self.doc = compose.load_compose()
        self.services: dict[str, dict[str, Any]] = self.doc["services"]
        self.db_url, self.cache_url = db_url, cache_url
        # failures are test failures; 40 lines of log say why
        self.supervisor = Supervisor(workdir, error=AssertionError, tail_lines=40)
        self.sut_base = free_port_range(len(SUT_SERVICES))
        self.ports: dict[tuple[str, int], int] = {}
        for name, svc in self.services.items():
            for host, port in self._refs(name, svc) + [(name, p) for p in self._own_ports(svc)]:
                if (host, port) in self.ports:
                    continue
                if host in SUT_SERVICES:
                    self.ports[(host, port)] = self.sut_base + SUT_SERVICES[host]
                else:
                    self.ports[(host, port)] = free_port()

    # -- rewriting --------------------------------------------------------------------
    def _refs(self, name: str, svc: Mapping[str, Any]) -> list[tuple[str, int]]:
        strings = compose.command_of(svc) + list(compose.environment_of(svc).values())
        hc = (svc.get("healthcheck") or {}).get("test") or []
        strings += [hc] if isinstance(hc, str) else [str(x) for x in hc]
        out = []
        for s in strings:
            for host, port in compose._HOSTPORT.findall(s):
                host = name if host in compose.SELF_HOSTS else host
                if host in self.services:
                    out.append((host, int(port)))
        for p in svc.get("ports", []) or []:
            out.append((name, int(str(p).split(":")[-1].split("/")[0])))
        return out

    @staticmethod
    def _own_ports(svc: Mapping[str, Any]) -> set[int]:
        """Every port the service binds, by its parsed command (not only those others name)."""
        cmd, env = compose.command_of(svc), compose.environment_of(svc)
        if cmd[:1] in (["slo"], ["sut"]):
            params, error = compose.parse_click(cmd[0], cmd[1:], env)
            assert not error, error
            return compose._listen_ports_from_params(params)
        if cmd[:1] == ["locust"] and "--master" in cmd:
            return {5557, int(env.get("LOCUST_WEB_PORT", "8089"))}
        return set()

    def port(self, service: str, port: int) -> int:
        """Where `service`'s compose port `port` is on this machine."""
        return self.ports[(service, port)]

    def _rewrite(self, name: str, text: str, own_token: bool = False) -> str:
        for (host, port), new in self.ports.items():
            text = text.replace(f"{host}:{port}", f"127.0.0.1:{new}")
            if host == name:
                text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{new}")
                text = text.replace(f"localhost:{port}", f"127.0.0.1:{new}")
                if own_token and text == str(port):
                    text = str(new)
        if own_token and text == "0.0.0.0":
            text = "127.0.0.1"
        if text.startswith("/data/"):
            text = str(self.workdir / "data" / text[len("/data/"):])
        return text

    def command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The service's argv and environment, as this machine runs them."""
        svc = self.services[name]
        argv = [self._rewrite(name, a, own_token=True) for a in compose.command_of(svc)]
        if "--master-host" in argv:
            i = argv.index("--master-host") + 1
            argv[i] = "127.0.0.1" if argv[i] in self.services else argv[i]
        argv[0] = str(BIN / argv[0])
        env = {k: self._rewrite(name, v, own_token=True) for k, v in compose.environment_of(svc).items()}
        for i, a in enumerate(argv[:-1]):
            if a == "--db":
                argv[i + 1] = self.db_url
            elif a == "--cache":
                argv[i + 1] = self.cache_url
        if "SUT_DB" in env:
            env.update(SUT_DB=self.db_url, SUT_CACHE=self.cache_url)
        if "SUT_DATA_DIR" in env or compose.command_of(svc)[:1] == ["sut"]:
            env["SUT_DATA_DIR"] = str(self.workdir / "sut" / name)
        cmd = compose.command_of(svc)
        if cmd[:1] == ["locust"]:
            master = next((n for n, s in self.services.items() if "--master" in compose.command_of(s)), None)
            master_port = (master, 5557)
            if master_port in self.ports:
                key = "LOCUST_MASTER_BIND_PORT" if "--master" in cmd else "LOCUST_MASTER_NODE_PORT"
                env[key] = str(self.ports[master_port])
            if "--master" in cmd:
                env.setdefault("LOCUST_MASTER_BIND_HOST", "127.0.0.1")
        return argv, env

    def healthcheck(self, name: str) -> list[str] | None:
        test = (self.services[name].get("healthcheck") or {}).get("test")
        if not test or test[0] != "CMD" or test[1] != "python":
            return None
        return [sys.executable] + [self._rewrite(name, str(a)) for a in test[2:]]

    # -- processes --------------------------------------------------------------------
    def start(self, name: str, *, label: str | None = None, extra_env: Mapping[str, str] | None = None,
              argv: list[str] | None = None) -> Proc:
        """Start `name` as compose runs it; `argv` replaces the command (its variables stay,
        less the master/worker wiring, which belongs to the compose command)."""
        cmd, env = self.command(name)
        if argv:
            for key in ("LOCUST_MASTER_NODE_PORT", "LOCUST_MASTER_BIND_PORT", "LOCUST_MASTER_BIND_HOST"):
                env.pop(key, None)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(compose.PREFIXES)}
        full_env.update(env)
        full_env.update(extra_env or {})
        return self.supervisor.spawn(label or name, argv or cmd, full_env, cwd=ROOT)

    def start_jaeger_standin(self) -> Proc:
        """A second collector where Jaeger's OTLP/HTTP port would be."""
        port = self.ports[("jaeger", 4318)]
        argv = [str(BIN / "slo"), "collect", "--store", str(self.workdir / "jaeger-store"),
                "--port", str(port), "--grpc-port", "-1"]
        proc = self.supervisor.spawn("jaeger-standin", argv, cwd=ROOT)
        self.wait_port(proc, port)
        return proc

    def wait_port(self, proc: Proc, port: int, timeout: float = 60) -> None:
        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return True
            except OSError:
                return False

        self.supervisor.wait_until(f"{proc.name} on port {port}", listening, [proc], timeout)

    def wait_healthy(self, procs: dict[str, Proc], timeout: float = 120) -> None:
        """Until each service's own compose healthcheck passes."""
        pending = dict(procs)

        def all_healthy() -> bool:
            for name in list(pending):
                check = self.healthcheck(name)
                assert check, f"{name} has no python healthcheck to run"
                if subprocess.run(check, capture_output=True, timeout=10).returncode == 0:
                    del pending[name]
            return not pending

        self.supervisor.wait_until(lambda: f"healthy {list(pending)}", all_healthy,
                                   procs.values(), timeout, interval=0.3)

    def start_core(self) -> None:
        """Jaeger stand-in, collector and the five SUT services, healthy."""
        self.start_jaeger_standin()
        self.wait_healthy({"collector": self.start("collector")})
        self.wait_healthy({n: self.start(n, extra_env={"SUT_WORKERS": "1"}) for n in SUT_SERVICES})

    @property
    def procs(self) -> list[Proc]:
        return self.supervisor.procs

    def stop_all(self) -> None:
        """Every group: SIGTERM, then SIGKILL what lingers (grandchildren included)."""
        self.supervisor.stop()
