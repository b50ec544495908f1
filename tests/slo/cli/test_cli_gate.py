"""`slo gate` run as a real command: whatever stops it other than the check's verdict is
exit 2 with one line saying what failed (no traceback, never exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _gate(cwd: Path, *args: str, pythonpath: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLO_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)
    return subprocess.run(
        [sys.executable, "-c", "import sys; from slo.cli import main; sys.exit(main())",
         "gate", "--duration", "1", "--warmup", "0", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )


def _one_line(r: subprocess.CompletedProcess[str], *, starts: bool = False) -> str:
    """The one-line exit 2. `starts`: processes may have started (the check's imports load
    while they do), but no load was spent before the failure was known."""
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    if starts:
        assert "warm-up" not in r.stdout and "phase, slice" not in r.stdout, r.stdout
    else:
        assert "collector" not in r.stdout, "nothing may start before the inputs are known good"
    return lines[0]


def test_unwritable_report_dir_is_exit_2_before_anything_starts(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    line = _one_line(_gate(tmp_path, "--report-dir", str(blocker / "reports")))
    assert line.startswith(f"Error: --report-dir {blocker / 'reports'} is not a writable directory")


def test_missing_locustfile_is_exit_2_in_one_line(tmp_path: Path) -> None:
    line = _one_line(_gate(tmp_path, "--locustfile", "no-such-locustfile.py"))
    assert line == "Error: Locust file no-such-locustfile.py does not exist"


def test_an_import_error_inside_the_gate_is_exit_2_in_one_line(tmp_path: Path) -> None:
    """A broken install (here: duckdb, which the gate loads before it starts anything)."""
    shadow = tmp_path / "shadow"
    (shadow / "duckdb").mkdir(parents=True)
    (shadow / "duckdb" / "__init__.py").write_text(
        "raise ImportError('duckdb is broken in\\nthis environment')\n")
    line = _one_line(_gate(tmp_path, pythonpath=str(shadow)), starts=True)
    assert line.startswith("Error: the gate could not run: ImportError: duckdb is broken in this "
                           "environment (in __init__.py:1)")
