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
