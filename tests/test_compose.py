"""docker-compose.yml checked against the project's real CLIs, without a Docker engine.

No Docker engine runs where these tests run, so the compose file is proven the other way:
every service's command is parsed by the very parser that will parse it in the container
(click's for `slo` and `sut`, Locust's own, with the plugin's `--slo-*` options, in a
subprocess because importing locust monkey-patches this process with gevent), with the
service's environment in place so that values coming from variables are type-checked too.
Every SUT_/SLO_/OTEL_/LOCUST_ variable must be one the program reads; every host:port a
service names must be a service of this file listening on that port, and a dependency of the
service that names it; health checks must exist where `service_healthy` waits on them.

The mutation test at the end proves the checker fails on a misspelt flag, variable or port.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent
LOCUST = str(VENV_BIN / "locust")

# Ports of the third-party images (their documented defaults); ours come from our CLIs.
IMAGE_PORTS = {
    "postgres": {5432},
    "redis": {6379},
    "jaegertracing/jaeger": {4317, 4318, 5778, 5779, 9411, 13133, 14250, 14268, 16686},
    "prom/prometheus": {9090},
}
# Third-party images without a shell or HTTP client to probe themselves with.
NO_HEALTHCHECK_OK = {"jaegertracing/jaeger"}
PREFIXES = ("SUT_", "SLO_", "OTEL_", "LOCUST_")
SELF_HOSTS = {"127.0.0.1", "localhost"}
SUT_SERVICES = set(__import__("sut").SERVICES)

# ---------------------------------------------------------------------------------------------
# Loading: YAML (anchors and merge keys), then compose's ${VAR:-default} interpolation.

_VAR = re.compile(
    r"\$(?:(\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution, enough for this file: $$, $V, ${V}, ${V:-d}, ${V-d},
    ${V:?e}, ${V:+r}. An unset variable without a default is an error, as it is a bug here."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        val = env.get(name)
        if op in (":-", "-"):
            return val if (val if op == ":-" else val is not None) else arg
        if op in (":?", "?"):
            if not val:
                raise ValueError(f"${{{name}}} is required: {arg}")
            return val
        if op in (":+", "+"):
            return arg if (val if op == ":+" else val is not None) else ""
        if val is None:
            raise ValueError(f"${{{name}}} has no default in docker-compose.yml")
        return val

    return _VAR.sub(sub, value)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(x, env) for x in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(path: Path = COMPOSE, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as `docker compose config` would see it with an empty environment."""
    raw = yaml.safe_load(path.read_text())
    return _interpolate_tree(raw, env or {})


def command_of(svc: Mapping[str, Any]) -> list[str]:
    cmd = svc.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(x) for x in cmd]


def environment_of(svc: Mapping[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_of(svc: Mapping[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def image_name(svc: Mapping[str, Any]) -> str:
    return str(svc.get("image", "")).rsplit(":", 1)[0] if "build" not in svc else "<project>"


# ---------------------------------------------------------------------------------------------
# The project's CLIs, introspected.


def _cli(program: str) -> click.Command:
    if program == "slo":
        from slo.cli import main
    else:
        from sut.cli import main
    return main


def _root_context(cmd: click.Command, program: str) -> click.Context:
    return click.Context(cmd, info_name=program, **cmd.context_settings)


def click_envvars(program: str) -> set[str]:
    """Every variable any option of `program` reads: explicit `envvar=` and click's auto names."""
    names: set[str] = set()

    def walk(cmd: click.Command, ctx: click.Context) -> None:
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            if isinstance(p.envvar, str):
                names.add(p.envvar)
            elif p.envvar:
                names.update(p.envvar)
            if p.allow_from_autoenv and ctx.auto_envvar_prefix and p.name:
                names.add(f"{ctx.auto_envvar_prefix}_{p.name.upper()}")
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, click.Context(sub, info_name=name, parent=ctx, **sub.context_settings))

    main = _cli(program)
    walk(main, _root_context(main, program))
    return names


def source_envvars(*packages: str) -> tuple[set[str], list[re.Pattern[str]]]:
    """Variable names a package's own code reads: string constants like "SUT_BUGS", and
    patterns for names it builds (f"SUT_N_{key}", "SUT_" + name + "_URL")."""
    names: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    prefix = re.compile("|".join(PREFIXES))

    def template(node: ast.AST) -> list[str | None] | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            return [v.value if isinstance(v, ast.Constant) else None for v in node.values]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = template(node.left), template(node.right)
            return (left or [None]) + (right or [None])
        return None

    for pkg in packages:
        for f in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(f.read_text(), str(f))
            inner = {  # parts of a bigger expression: only the whole one names a variable
                id(child)
                for node in ast.walk(tree)
                if isinstance(node, ast.JoinedStr | ast.BinOp)
                for child in ast.iter_child_nodes(node)
            }
            for node in ast.walk(tree):
                if id(node) in inner:
                    continue
                parts = template(node)
                if not parts or not isinstance(parts[0], str) or not prefix.match(parts[0]):
                    continue
                if all(isinstance(p, str) for p in parts):
                    value = "".join(parts)  # type: ignore[arg-type]
                    if re.fullmatch(r"[A-Z0-9_]+", value):
                        names.add(value)
                else:
                    rx = "".join(re.escape(p) if isinstance(p, str) else "[A-Z0-9_]+" for p in parts)
                    patterns.append(re.compile(rx))
    return names, patterns


@dataclass
class VarSet:
    """Names of environment variables a program reads, exact or as patterns."""

    names: set[str] = field(default_factory=set)
    patterns: list[re.Pattern[str]] = field(default_factory=list)

    def __or__(self, other: VarSet) -> VarSet:
        return VarSet(self.names | other.names, self.patterns + other.patterns)

    def __contains__(self, var: object) -> bool:
        return var in self.names or any(p.fullmatch(str(var)) for p in self.patterns)


def otel_envvars() -> set[str]:
    """Every OTEL_* variable the installed OpenTelemetry SDK, exporters and instrumentations read."""
    import opentelemetry

    names: set[str] = set()
    for p in opentelemetry.__path__:
        for f in Path(p).rglob("*.py"):
            names |= set(re.findall(r"[\"'](OTEL_[A-Z0-9_]+)[\"']", f.read_text(errors="ignore")))
    return names


@contextlib.contextmanager
def patched_environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for k in [k for k in os.environ if k.startswith(PREFIXES)]:
        del os.environ[k]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse_click(program: str, args: list[str], env: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """Parse `program args` with the real click command and `env` in place, without running it.

    Returns (params of the leaf command, error or None)."""
    main = _cli(program)
    cwd = os.getcwd()
    with patched_environ(env):
        os.chdir(ROOT)
        try:
            ctx = _root_context(main, program)
            cmd, rest = main, list(args)
            while isinstance(cmd, click.Group):
                if not rest or rest[0].startswith("-"):
                    return {}, f"`{program}` needs a subcommand, got {rest!r}"
                name = rest.pop(0)
                sub = cmd.get_command(ctx, name)
                if sub is None:
                    known = ", ".join(cmd.list_commands(ctx))
                    return {}, f"`{program}` has no command {name!r} (known: {known})"
                if isinstance(sub, click.Group):
                    ctx = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
                else:
                    leaf = sub.make_context(name, rest, parent=ctx)
                    return dict(leaf.params), None
                cmd = sub
            return {}, "unreachable"
        except click.exceptions.Exit as e:
            return {}, f"`{program} {' '.join(args)}` exited early ({e.exit_code})"
        except click.ClickException as e:
            return {}, f"`{program} {' '.join(args)}`: {e.format_message()}"
        finally:
            os.chdir(cwd)


_LOCUST_PARSE = r"""
import contextlib, io, json, os, re, sys
from pathlib import Path
import locust
from locust.argument_parser import get_parser
from locust.util.load_locustfile import load_locustfile

cases = json.loads(sys.stdin.read())
out = {"envvars": [], "cases": []}
classes = {}
loaded = set()
for case in cases:
    for f in case["locustfiles"]:
        if f not in loaded:
            loaded.add(f)
            users, _ = load_locustfile(f)
            classes[f] = sorted(users)
parser = get_parser(default_config_files=[])
env = {a.env_var for a in parser._actions if getattr(a, "env_var", None)}
for f in Path(locust.__file__).parent.rglob("*.py"):
    env |= set(re.findall(r"[\"'](LOCUST_[A-Z0-9_]+)[\"']", f.read_text(errors="ignore")))
out["envvars"] = sorted(env)
for case in cases:
    saved = dict(os.environ)
    for k in [k for k in os.environ if k.startswith("LOCUST_")]:
        del os.environ[k]
    os.environ.update(case["env"])
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = parser.parse_args(args=case["args"])
        opts = {k: v for k, v in vars(ns).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
        avail = sorted(set().union(*[classes[f] for f in case["locustfiles"]]))
        bad = [u for u in (ns.user_classes or []) if u not in avail]
        error = f"unknown User class {bad} (known: {avail})" if bad else None
        out["cases"].append({"options": opts, "error": error})
    except SystemExit:
        out["cases"].append({"options": {}, "error": " ".join(err.getvalue().split())})
    finally:
        os.environ.clear()
        os.environ.update(saved)
print(json.dumps(out))
"""


def parse_locust_many(cases: list[tuple[list[str], dict[str, str]]]) -> tuple[set[str], list[tuple[dict, str | None]]]:
    """Parse each (args without the leading `locust`, env) with Locust's own parser, extended
    by the locustfiles' `init_command_line_parser` listeners, in one subprocess."""
    payload = []
    for args, env in cases:
        files = []
        for i, a in enumerate(args):
            if a in ("-f", "--locustfile") and i + 1 < len(args):
                files = args[i + 1].split(",")
            elif a.startswith("--locustfile="):
                files = a.split("=", 1)[1].split(",")
        files = files or [env.get("LOCUST_LOCUSTFILE", "locustfile.py")]
        payload.append({"args": args, "env": env, "locustfiles": files})
    proc = subprocess.run(
        [sys.executable, "-c", _LOCUST_PARSE],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, f"locust parser subprocess failed:\n{proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return set(out["envvars"]), [(c["options"], c["error"]) for c in out["cases"]]


# ---------------------------------------------------------------------------------------------
# The checker.

_HOSTPORT = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?(?:[^@/\s'\"]+@)?([A-Za-z0-9_.-]+):(\d{2,5})\b")


def _listen_ports_from_params(params: Mapping[str, Any]) -> set[int]:
    """Ports a parsed `slo`/`sut` command binds: every int option named *port; a SUT base port
    stands for its five services unless one service's own --port is given."""
    ports: set[int] = set()
    for name, value in params.items():
        if not name.endswith("port") or not isinstance(value, int) or isinstance(value, bool):
            continue
        if name != "base_port":
            ports.add(value)
        elif params.get("port") is None:
            ports.update(range(value, value + len(SUT_SERVICES)))
    return ports


def _dockerignored(rel: str) -> bool:
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    first = rel.split("/", 1)[0]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(first, p) for p in patterns)


def _depends_closure(services: Mapping[str, Any], name: str) -> set[str]:
    """What `name` waits for, directly or through what it waits for."""
    seen: set[str] = set()
    todo = list(depends_of(services[name]))
    while todo:
        dep = todo.pop()
        if dep not in seen and dep in services:
            seen.add(dep)
            todo.extend(depends_of(services[dep]))
    return seen


def check_many(composes: list[dict[str, Any]]) -> list[list[str]]:
    """Problems found in each compose document (one locust subprocess for all of them)."""
    locust_cases: list[tuple[list[str], dict[str, str]]] = []
    for doc in composes:
        for svc in doc["services"].values():
            cmd = command_of(svc)
            if cmd and cmd[0] == "locust":
                locust_cases.append((cmd[1:], environment_of(svc)))
    locust_env, locust_results = parse_locust_many(locust_cases) if locust_cases else (set(), [])
    results = iter(locust_results)
    known = {
        "slo": VarSet(click_envvars("slo")) | VarSet(*source_envvars("slo")),
        "sut": VarSet(click_envvars("sut")) | VarSet(*source_envvars("sut")),
        "locust": VarSet(locust_env) | VarSet(*source_envvars("loadtests")),
        "otel": VarSet(otel_envvars()),
    }
    return [_check_one(doc, results, known) for doc in composes]


def _check_one(doc: dict[str, Any], locust_results: Iterator, known: dict[str, VarSet]) -> list[str]:
    problems: list[str] = []
    services: dict[str, dict[str, Any]] = doc["services"]
    listen: dict[str, set[int]] = {}
    master_refs: dict[str, tuple[str, int]] = {}
    locust_opts: dict[str, dict[str, Any]] = {}

    # 1. Commands parse; variables are known; what each service listens on.
    for name, svc in services.items():
        cmd, env = command_of(svc), environment_of(svc)
        if "build" not in svc:
            listen[name] = set(IMAGE_PORTS.get(image_name(svc), set()))
            if not listen[name]:
                problems.append(f"{name}: image {svc.get('image')!r} has no known ports in this test")
            continue
        if not cmd:
            problems.append(f"{name}: our image needs an explicit command")
            continue
        program = cmd[0]
        if program in ("slo", "sut"):
            params, error = parse_click(program, cmd[1:], env)
            allowed = known[program] | known["otel"]
            if program == "slo" and len(cmd) > 1 and cmd[1] == "gate":
                allowed |= known["sut"]  # the gate starts the SUT and passes its variables on
            listen[name] = _listen_ports_from_params(params)
        elif program == "locust":
            opts, error = next(locust_results)
            locust_opts[name] = opts
            allowed = known["locust"] | known["slo"] | known["otel"]
            ports: set[int] = set()
            if opts and not opts.get("worker"):
                if not opts.get("headless"):
                    ports.add(int(opts["web_port"]))
                if opts.get("master"):
                    ports.add(int(opts["master_bind_port"]))
            if opts.get("worker"):
                master_refs[name] = (opts["master_host"], int(opts["master_port"]))
            listen[name] = ports
        else:
            problems.append(f"{name}: unknown program {program!r} (expected slo, sut or locust)")
            continue
        if error:
            problems.append(f"{name}: {error}")
        for var in env:
            if var.startswith(PREFIXES) and var not in allowed:
                problems.append(f"{name}: `{program}` reads no variable {var}")
        for tok in cmd[1:]:
            if re.fullmatch(r"[\w.-]+(/[\w.-]+)*\.(py|ya?ml|json)", tok):
                if not (ROOT / tok).is_file():
                    problems.append(f"{name}: {tok} does not exist in the repository")
                elif _dockerignored(tok):
                    problems.append(f"{name}: {tok} is excluded from the image by .dockerignore")

    # 2. Every host:port named points at a service of this file listening there.
    def refs_in(svc: Mapping[str, Any]) -> list[tuple[str, int]]:
        strings = command_of(svc) + list(environment_of(svc).values())
        hc = (svc.get("healthcheck") or {}).get("test") or []
        strings += [hc] if isinstance(hc, str) else [str(x) for x in hc]
        return [(h, int(p)) for s in strings for h, p in _HOSTPORT.findall(s)]

    prom_cfg = ROOT / "deploy" / "prometheus.yml"
    for name, svc in services.items():
        refs = refs_in(svc)
        if name in master_refs:
            refs.append(master_refs[name])
        from_file: list[tuple[str, int]] = []
        if image_name(svc) == "prom/prometheus":
            cfg = yaml.safe_load(prom_cfg.read_text())
            for job in cfg.get("scrape_configs", []):
                for sc in job.get("static_configs", []):
                    for t in sc.get("targets", []):
                        h, p = t.rsplit(":", 1)
                        from_file.append((h, int(p)))
            if not from_file:
                problems.append(f"{name}: deploy/prometheus.yml scrapes nothing")
        deps = _depends_closure(services, name)
        for host, port in refs + from_file:
            target = name if host in SELF_HOSTS else host
            if target not in services:
                continue  # 0.0.0.0 binds, external hosts
            if port not in listen.get(target, set()):
                problems.append(
                    f"{name}: {host}:{port} but {target} listens on {sorted(listen.get(target, set()))}"
                )
            # A service that names another waits for it, except where SUT services name their
            # peers: those are calls at request time (and order-service waits for all four).
            peer_of_peer = name in SUT_SERVICES and target in SUT_SERVICES
            if target != name and (host, port) not in from_file and target not in deps and not peer_of_peer:
                problems.append(f"{name}: uses {target} but does not depend on it (even indirectly)")
        for p in svc.get("ports", []) or []:
            container = int(str(p).split(":")[-1].split("/")[0])
            if container not in listen.get(name, set()):
                problems.append(f"{name}: publishes {p} but listens on {sorted(listen.get(name, set()))}")

    # 3. Where each program will look for its peers, by its own settings code: every SUT
    #    service must find every other at its compose name (127.0.0.1 is itself here).
    master_host = next(
        (o.get("host") for o in locust_opts.values() if o.get("master") and o.get("host")), None
    )
    for name, svc in services.items():
        cmd, env = command_of(svc), environment_of(svc)
        if cmd[:1] == ["sut"]:
            from sut.config import Settings

            with patched_environ(env):
                urls = Settings.from_env().urls
        elif cmd[:1] == ["locust"] and not locust_opts.get(name, {}).get("master"):
            from loadtests import catalog

            host = locust_opts.get(name, {}).get("host") or master_host
            if not host:
                problems.append(f"{name}: no --host for the load, nor a master that has one")
                continue
            with patched_environ(env):
                urls = catalog.service_urls(host)
        else:
            continue
        for peer, url in urls.items():
            parts = urlsplit(url)
            if peer in services and (parts.hostname != peer or parts.port not in listen.get(peer, set())):
                problems.append(f"{name}: would reach {peer} at {url}, not at {peer}:{sorted(listen.get(peer, set()))}")

    # 4. Dependencies exist; health checks exist where they are waited on.
    for name, svc in services.items():
        for dep, cond in depends_of(svc).items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
            elif cond == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        if "profiles" not in svc and "healthcheck" not in svc and image_name(svc) not in NO_HEALTHCHECK_OK:
            problems.append(f"{name}: no healthcheck")

    # 5. Volumes: named ones declared, bind mounts present in the repository.
    declared = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        for v in svc.get("volumes", []) or []:
            src = str(v).split(":", 1)[0]
            if src.startswith((".", "/")):
                if src.startswith("./") and not (ROOT / src).exists() and not src.startswith("./reports"):
                    problems.append(f"{name}: bind mount {src} does not exist")
            elif src not in declared:
                problems.append(f"{name}: volume {src} is not declared under volumes:")
    return problems


def check_compose(doc: dict[str, Any]) -> list[str]:
    return check_many([doc])[0]


# ---------------------------------------------------------------------------------------------
# Tests.


def test_compose_file_matches_the_real_clis() -> None:
    doc = load_compose()
    assert check_compose(doc) == []


def test_the_stack_has_every_part() -> None:
    services = load_compose()["services"]
    sut = {"order-service", "user-service", "product-service", "inventory-service", "promotion-service"}
    assert sut | {"postgres", "redis", "collector", "jaeger", "prometheus", "locust-master", "locust-worker"} <= set(services)
    for name in sut:
        env = environment_of(services[name])
        assert env.get("SUT_DB", "").startswith("postgresql://"), name
        assert env.get("SUT_CACHE", "").startswith("redis://"), name
        assert env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://collector:4318", name
    collect = command_of(services["collector"])
    assert collect[:2] == ["slo", "collect"] and "http://jaeger:4318" in collect
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2")
    # Workers scale: no fixed name, no published port.
    assert "container_name" not in services["locust-worker"] and not services["locust-worker"].get("ports")
    assert "--worker" in command_of(services["locust-worker"])
    assert "--master" in command_of(services["locust-master"])
    gate = services["gate"]
    assert command_of(gate)[:2] == ["slo", "gate"] and gate.get("profiles")


def test_dockerfile_builds_the_project_from_pyproject() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pyproject.toml" in text and re.search(r"pip install[^\n]*\s\.(\s|$)", text)
    for needed in ("pyproject.toml", "slo/cli/__init__.py", "sut/cli.py", "slo.yaml", "loadtests/locustfile.py"):
        assert not _dockerignored(needed), f"{needed} is excluded by .dockerignore"
    for name, svc in load_compose()["services"].items():
        if "build" in svc:
            assert svc["build"] in (".", {"context": "."}), name


def test_locust_help_lists_every_flag_the_compose_file_uses() -> None:
    """Locust's own flags through its real entry point, `locust -f ... --help`.

    Locust 2.4x prints --help before it imports the locustfile, so the plugin's --slo-* flags
    never appear there; the parser subprocess above loads the locustfile first and so checks
    those too (the mutation test proves it)."""
    services = load_compose()["services"]
    used = {a.split("=", 1)[0] for s in services.values() if command_of(s)[:1] == ["locust"]
            for a in command_of(s)[1:] if a.startswith("--")}
    out = subprocess.run(
        [LOCUST, "-f", "loadtests/locustfile.py", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    listed = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out.stdout))
    own = {f for f in used if not f.startswith("--slo-")}
    assert {"--master", "--worker"} <= own <= listed, sorted(own - listed)


def _mutate(doc: dict[str, Any], service: str, old: str, new: str) -> dict[str, Any]:
    """A copy of `doc` with `old` replaced by `new` in one service's command or environment."""
    out = copy.deepcopy(doc)
    svc = out["services"][service]
    cmd = command_of(svc)
    if old in cmd:
        svc["command"] = [new if a == old else a for a in cmd]
        return out
    env = environment_of(svc)
    if old in env:
        svc["environment"] = {(new if k == old else k): v for k, v in env.items()}
        return out
    for k, v in env.items():
        if old in v:
            env[k] = v.replace(old, new)
            svc["environment"] = env
            return out
    raise AssertionError(f"{old!r} not in {service}")


def test_the_checker_fails_on_a_misspelt_flag_variable_or_port() -> None:
    doc = load_compose()
    mutants = {
        "slo flag": _mutate(doc, "collector", "--grpc-port", "--grpc-prot"),
        "sut variable": _mutate(doc, "inventory-service", "SUT_CACHE", "SUT_CAHCE"),
        "locust flag": _mutate(doc, "locust-master", "--slo-store", "--slo-stroe"),
        "locust value": _mutate(doc, "locust-master", "LOCUST_USERS", "LOCUST_USRES"),
        "wrong port": _mutate(doc, "locust-master", "http://order-service:8080", "http://order-service:8090"),
        "unknown host": _mutate(doc, "collector", "http://jaeger:4318", "http://jaeger:4319"),
    }
    found = dict(zip(mutants, check_many(list(mutants.values())), strict=True))
    assert any("--grpc-prot" in p for p in found["slo flag"]), found["slo flag"]
    assert any("SUT_CAHCE" in p for p in found["sut variable"]), found["sut variable"]
    assert any("--slo-stroe" in p for p in found["locust flag"]), found["locust flag"]
    assert any("LOCUST_USRES" in p for p in found["locust value"]), found["locust value"]
    assert any("order-service:8090" in p for p in found["wrong port"]), found["wrong port"]
    assert any("jaeger:4319" in p for p in found["unknown host"]), found["unknown host"]


def test_interpolation_follows_compose_rules() -> None:
    env = {"A": "x", "E": ""}
    assert interpolate("${A:-d}/${B:-d}/${E:-d}/${E-d}/$$A/${A:+r}/${B:+r}", env) == "x/d/d//$A/r/"
    try:
        interpolate("${NOPE}", env)
    except ValueError as e:
        assert "NOPE" in str(e)
    else:
        raise AssertionError("an unset variable without default must be an error")
