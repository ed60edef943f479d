#!/usr/bin/env bash
# Run the atheris harness of the token codec for a bounded time and report how many inputs
# it executed. A crash (an escaped non-authgate exception, or a forged token accepted) makes
# it exit non-zero and keeps the input that caused it.
#
#   fuzz/run.sh          # 60 seconds
#   fuzz/run.sh 600      # ten minutes
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
SECS=${1:-60}
work=$(mktemp -d "${TMPDIR:-/tmp}/authgate-atheris.XXXXXX")
mkdir -p "$work/corpus" "$work/artifacts"

"$PYTHON" fuzz/fuzz_decode.py --write-seeds "$work/corpus" >/dev/null || exit 1
"$PYTHON" fuzz/fuzz_decode.py -max_total_time="$SECS" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
status=$?

executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$work/log" | tail -n 1)
echo "atheris $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("atheris"))'): executed ${executed:-?} inputs in ${SECS} s (${rate:-?}/s; ${cov:-no coverage line})"
if [ "$status" -ne 0 ]; then
    echo "FAILED (exit $status); the last lines of the log:"
    tail -n 40 "$work/log"
    echo "inputs kept in $work/artifacts:"
    ls -l "$work/artifacts"
    exit "$status"
fi
rm -rf "$work"
echo "no crash"
