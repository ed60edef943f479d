#!/usr/bin/env bash
# The long API fuzzing run: schemathesis against /openapi.json of a running server (loopback,
# a temporary SQLite file), every operation without credentials and with an admin token,
# EXAMPLES (default 200) examples per operation and mode, from a random seed. Checks: no 5xx,
# bodies conform to their documented schema, no Content-Type mismatch. It prints the requests
# sent per operation, the statuses seen and every distinct failure; it exits non-zero when
# a check failed.
#
#   bench/fuzz_api.sh                 # 200 examples per operation and mode
#   EXAMPLES=500 bench/fuzz_api.sh    # longer
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
EXAMPLES=${EXAMPLES:-200}
REPORT=$(mktemp "${TMPDIR:-/tmp}/authgate-fuzz-api.XXXXXX.json")
trap 'rm -f "$REPORT"' EXIT

echo "schemathesis $("$PYTHON" -c 'import schemathesis; print(schemathesis.SCHEMATHESIS_VERSION)'), ${EXAMPLES} examples per operation and mode"
started=$(date +%s)
FUZZ_API_EXAMPLES=$EXAMPLES FUZZ_API_RANDOM=1 FUZZ_API_REPORT=$REPORT \
    "$PYTHON" -m pytest tests/fuzz/test_api_fuzz.py -q -p no:cacheprovider --tb=no -o addopts="" \
    >"$REPORT.log" 2>&1
status=$?
elapsed=$(( $(date +%s) - started ))
tail -n 3 "$REPORT.log"
rm -f "$REPORT.log"

"$PYTHON" - "$REPORT" "$elapsed" <<'PY'
import json
import sys

rows = json.load(open(sys.argv[1]))
elapsed = int(sys.argv[2])
if not rows:
    sys.exit("no report: the run failed before fuzzing (see above)")


def classes(statuses):
    out = {"2xx": 0, "4xx": 0, "5xx": 0}
    for code, n in statuses.items():
        out[f"{str(code)[0]}xx"] = out.get(f"{str(code)[0]}xx", 0) + n
    return out


print()
print(f"{'operation':44} {'mode':9} {'sent':>6} {'probes':>6} {'2xx':>5} {'4xx':>5} {'5xx':>4} {'fail':>4}  statuses")
total = failed = 0
for r in sorted(rows, key=lambda r: (r["operation"].split(" ", 1)[1], r["operation"], r["mode"])):
    c = classes(r["statuses"])
    total += r["sent"]
    failed += bool(r["failures"])
    seen = " ".join(f"{k}:{v}" for k, v in r["statuses"].items())
    print(
        f"{r['operation']:44} {r['mode']:9} {r['sent']:6} {r['method_probes']:6} {c['2xx']:5} "
        f"{c['4xx']:5} {c['5xx']:4} {len(r['failures']):4}  {seen}"
    )
print()
ops = len({r["operation"] for r in rows})
print(f"{total} requests, {ops} operations x {len({r['mode'] for r in rows})} modes, {elapsed} s")
low = sorted({r["operation"] for r in rows if r["sent"] - r["method_probes"] < 200})
if low:
    print("under 200 generated requests (nothing left to vary, or stopped at a failure):")
    for op in low:
        print(f"  {op}")
print()
if failed:
    print("FAILURES (distinct, per operation and mode):")
    for r in rows:
        for f in r["failures"]:
            print(f"  {r['operation']} [{r['mode']}]: {f}")
else:
    print("no failures")
PY
exit $status
