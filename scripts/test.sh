#!/usr/bin/env bash
# Install what the tests need, start the real test servers, run lint, types
# and the whole test suite. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

bash scripts/test-servers.sh start
trap 'bash scripts/test-servers.sh stop >/dev/null 2>&1 || true' EXIT

echo "== ruff"
ruff check src tests bench
echo "== mypy"
mypy
echo "== pytest"
# CI must run every test: a skip here means a server did not start.
python3 -m pytest -q "$@"
