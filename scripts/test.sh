#!/usr/bin/env bash
# Set up (idempotent), then run the whole test suite; GUI tests run under Xvfb via pytest-xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
