"""The CI example for a team's own repository uses only flags `slo gate` has, and does what
ci/README.md promises (both sides checked out, Markdown to the job summary, HTML artifact)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from slo.cli.gate import command as gate_command

ROOT = Path(__file__).resolve().parents[1]


def test_own_services_workflow_gates_base_against_pull_request() -> None:
    wf = yaml.safe_load((ROOT / "ci" / "github-workflow-own-services.yml").read_text())
    steps = wf["jobs"]["slo-gate"]["steps"]
    checkouts = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]
    paths = {s["with"]["path"]: s["with"].get("ref", "") for s in checkouts}
    assert set(paths) == {"baseline", "candidate"}
    assert "base.sha" in paths["baseline"]
    (gate,) = [s for s in steps if "slo gate" in s.get("run", "")]
    script = gate["run"]
    assert "$GITHUB_STEP_SUMMARY" in script and "slo-report.md" in script
    known = {opt for p in gate_command.params for opt in getattr(p, "opts", [])}
    args = re.sub(r'"[^"]*"', '""', script.split("slo gate", 1)[1])  # not the commands' own flags
    used = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", args))
    assert {"--baseline-cmd", "--candidate-cmd"} <= used
    assert used <= known, f"flags slo gate does not have: {used - known}"
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"].startswith("reports")
