"""What Locust's SLO plugin does as Locust quits is on the gate's path (the gate waits for
Locust to exit before it reads the last spans): writing the run's metadata loads no pyarrow
or numpy (half a second of CPU on a 2-core box, issue 12), and the store reads it back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys, types
import slo.locust.plugin as plugin
env = types.SimpleNamespace(parsed_options=types.SimpleNamespace(slo_store=sys.argv[1]))
plugin._write_meta(env, "run/with odd=chars", {"users": 3, "requests": 7})
heavy = sorted(m for m in ("pyarrow", "numpy", "duckdb") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_the_plugin_writes_run_metadata_without_loading_pyarrow(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, check=False,
                          env={"LOCUST_SKIP_MONKEY_PATCH": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "none"
    from slo.ingest.store import SpanStore

    assert SpanStore(tmp_path).read_run_meta("run/with odd=chars") == {"users": 3, "requests": 7}


FREEZE_PROBE = """
import gc, sys, types
import slo.locust.plugin as plugin
frozen = []
gc.freeze = lambda: frozen.append(True)
for run_id_file in ("", sys.argv[1]):
    env = types.SimpleNamespace(parsed_options=types.SimpleNamespace(slo_run_id_file=run_id_file))
    plugin.events.quitting.fire(environment=types.SimpleNamespace(
        parsed_options=env.parsed_options, runner=plugin.WorkerRunner.__new__(plugin.WorkerRunner)))
    print(len(frozen))
"""


def test_a_gates_locust_exits_without_its_last_garbage_collection(tmp_path: Path) -> None:
    """A gate's Locust (it follows a run-id file) freezes the garbage collector last thing at
    `quitting`: its exit, which the gate waits for, skips walking every object it made. A
    Locust run on its own is left as it is."""
    done = subprocess.run([sys.executable, "-c", FREEZE_PROBE, str(tmp_path / "run-id")],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"LOCUST_SKIP_MONKEY_PATCH": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1"]
