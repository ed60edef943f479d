#!/usr/bin/env bash
# Run the whole suite against the newest releases that pyproject.toml allows, ignoring the lock,
# in a throwaway virtual environment (.venv-latest). This is how a new release that breaks
# authgate (a deprecation, a changed default) is seen in a deliberate run, before a lock refresh
# (scripts/lock.sh --upgrade) takes it in. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .venv-latest
python3 -m venv .venv-latest
.venv-latest/bin/pip install -q --upgrade pip
.venv-latest/bin/pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
.venv-latest/bin/pip list --format=freeze > .venv-latest/versions.txt
echo "testing against: $(grep -ciE '^[a-z]' .venv-latest/versions.txt) packages (.venv-latest/versions.txt)"
npm ci --prefix tests/interop --no-audit --no-fund
.venv-latest/bin/pytest "$@"
