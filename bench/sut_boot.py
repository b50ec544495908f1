"""How long `sut up` takes to answer and to stop, and the CPU of its whole process tree.

    .venv/bin/python bench/sut_boot.py                        # 3 runs
    PYTHONPATH=/tmp/old-tree .venv/bin/python bench/sut_boot.py   # another tree's `sut up`

Each run copies the gate's seeded database, starts `sut up` on free ports (exporting to a
closed port: nothing is traced here), polls the five /healthz until all answer ("ready"),
sends SIGTERM and waits for its exit ("stop"). The CPU is every process of the tree, reaped:
`sut up`, the gunicorn masters and their workers. On a shared box alternate two trees.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ is on the path as this script's directory, and its sut.py would shadow the sut package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from slo.gate.sut import private_sqlite_db  # noqa: E402
from slo.ports import free_port_range  # noqa: E402
from sut.runner import healthy  # noqa: E402  (the readiness probe `sut up` itself uses)


def one_run() -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="sut-boot-") as tmp:
        db = private_sqlite_db(Path(tmp))
        port = free_port_range(5)
        env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                   SUT_ADMIN_TOKEN="bench")
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-P", "-c", "import sys; from sut.cli import main; sys.exit(main())",
             "up", "--base-port", str(port), "--data-dir", f"{tmp}/data", "--db", str(db)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp, env=env)
        pending = list(range(5))
        while pending:
            if proc.poll() is not None:
                raise SystemExit(f"sut up exited with {proc.returncode}")
            pending = [i for i in pending if not healthy(f"http://127.0.0.1:{port + i}")]
            time.sleep(0.05)
        ready = time.monotonic() - t0
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        stop = time.monotonic() - t0 - ready
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ready, stop, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"sut up; PYTHONPATH={os.environ.get('PYTHONPATH') or '(this tree)'}")
    for _ in range(args.runs):
        ready, stop, cpu = one_run()
        print(f"ready {ready:.2f} s, stop {stop:.2f} s, CPU of the tree {cpu:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
