#!/usr/bin/env bash
# The SLO gate as a CI step: run `slo gate`, publish its Markdown summary, keep its exit code.
#
#   ci/gate.sh                      # baseline + candidate on this commit, no bug switched on
#   BUGS=n_plus_one ci/gate.sh      # prove the gate catches a bug (exit 1)
#   SLO_GATE_BASELINE=ci/baseline.json ci/gate.sh   # compare with a saved baseline instead
#
# Environment (all optional): BUGS, DURATION (seconds per phase), USERS, REPORT_DIR (reports),
# SLO_GATE_BASELINE, SLO_GATE_SPEC, SLO_GATE_DB, SLO_GATE_CACHE, SLO (the slo command).
# Exit codes are the gate's: 0 pass, 1 an objective failed or regressed, 2 could not run.
set -uo pipefail
cd "$(dirname "$0")/.."

SLO="${SLO:-}"
if [[ -z "$SLO" ]]; then
  if [[ -x .venv/bin/slo ]]; then SLO=.venv/bin/slo; else SLO=slo; fi
fi
REPORT_DIR="${REPORT_DIR:-reports}"

args=(gate --report-dir "$REPORT_DIR")
[[ -n "${BUGS:-}" ]] && args+=(--bugs "$BUGS")
[[ -n "${DURATION:-}" ]] && args+=(--duration "$DURATION")
[[ -n "${USERS:-}" ]] && args+=(--users "$USERS")

"$SLO" "${args[@]}"
code=$?

# GitHub Actions shows this file on the run's summary page; other CIs can publish it too.
if [[ -n "${GITHUB_STEP_SUMMARY:-}" && -f "$REPORT_DIR/slo-report.md" ]]; then
  cat "$REPORT_DIR/slo-report.md" >> "$GITHUB_STEP_SUMMARY"
fi
case $code in
  0) echo "ci/gate.sh: SLO gate passed" ;;
  1) echo "ci/gate.sh: SLO gate FAILED: see $REPORT_DIR/slo-report.md and slo-report.html" ;;
  *) echo "ci/gate.sh: SLO gate could not run (exit $code)" ;;
esac
exit $code
