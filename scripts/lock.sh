#!/usr/bin/env bash
# Refresh the hashed lock files from pyproject.toml, on purpose (never as a side effect of an
# install): requirements/dev.lock is the development and CI set, requirements/deploy.lock the
# server with its PostgreSQL and Redis extras. Review the diff, run the suite, then commit.
#   scripts/lock.sh              keep every pin that still satisfies pyproject.toml
#   scripts/lock.sh --upgrade    move every pin to the newest release allowed
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tool=.lock-venv
if [ ! -x "$tool/bin/uv" ] || ! "$tool/bin/uv" --version | grep -q "$UV_VERSION"; then
  rm -rf "$tool"
  python3 -m venv "$tool"
  "$tool/bin/pip" install -q "uv==$UV_VERSION"
fi
common=(--generate-hashes --universal --python-version 3.11 --quiet "$@")
"$tool/bin/uv" pip compile pyproject.toml --extra dev "${common[@]}" -o requirements/dev.lock
"$tool/bin/uv" pip compile pyproject.toml --extra postgres --extra redis "${common[@]}" \
  -o requirements/deploy.lock
echo "locked: $(grep -c '^[a-z]' requirements/dev.lock) dev packages," \
  "$(grep -c '^[a-z]' requirements/deploy.lock) deploy packages"
