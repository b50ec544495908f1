"""The distribution as a user installs it: a wheel, not the editable checkout.

Builds the wheel (`pip wheel --no-deps`), installs it with the `[all]` extra into a fresh
virtualenv (from pip's cache/registry, as a user would), and from outside the source tree
runs `slo --help`, loads the Locust plugin and its SLO tab page, and renders an HTML report.
Also checks that the core install pulls none of Locust, Flask, gunicorn, psycopg or Redis.
The slowest test of the suite (one install); everything is checked in one go.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ("locust", "flask", "gunicorn", "psycopg", "redis")

pytestmark = pytest.mark.e2e


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # from a copy of the sources: setuptools builds in-tree (build/), which must not land here
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".slo", "reports", ".*_cache"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
         tmp_path)
    (wheel,) = dist.glob("slo_harness-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for packaged in ("slo/locust/slo_tab.html", "slo/locust/slo_plugin.py",
                     "slo/report/templates/report.html", "slo/defaults/slo.yaml",
                     "loadtests/locustfile.py"):
        assert packaged in names, f"{packaged} is not in the wheel"
    core = [line.split(":", 1)[1].strip().lower() for line in meta.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert core and not [d for d in core if d.startswith(EXTRAS_ONLY)], core
    assert re.search(r"^Provides-Extra: all$", meta, re.M)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py, bindir = venv / "bin" / "python", venv / "bin"
    # the versions this checkout is tested with (no resolver backtracking, no surprises)
    pins = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], tmp_path).stdout
    (tmp_path / "pins.txt").write_text(
        "\n".join(line for line in pins.splitlines() if not line.startswith("slo-harness")))
    _run([str(py), "-m", "pip", "install", "-q", "--no-compile", "-c", str(tmp_path / "pins.txt"),
          f"{wheel}[all]"], tmp_path)

    work = tmp_path / "work"  # not the checkout: only the installed package is importable
    work.mkdir()
    assert "gate" in _run([str(bindir / "slo"), "--help"], work).stdout
    probe = ("import slo, slo.locust.plugin as p, slo.locust.web as w; "
             "assert 'site-packages' in slo.__file__, slo.__file__; "
             "assert w.PAGE.is_file(); print(p.hooks.__name__)")
    assert "slo.locust.hooks" in _run([str(py), "-c", probe], work).stdout
    (work / "slo.yaml").write_text(
        "version: 1\nslos:\n  - name: example\n"
        "    select: {service: my.service, span: \"I'm a server span\"}\n"
        "    objectives: {latency_p95: 10s, error_rate: 100%}\n"
    )
    fixture = ROOT / "tests" / "fixtures" / "otlp-proto-example-trace.json"
    _run([str(bindir / "slo"), "check", "--traces", str(fixture), "--report-dir", "rep"], work)
    page = (work / "rep" / "slo-report.html").read_text()
    assert "<html" in page and "I&#39;m a server span" in page or "I'm a server span" in page
