#!/usr/bin/env bash
# Set up (idempotent), then estimate the kernel of a bundled sample blurred with a known kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/napari-kernelgan demo --out demo_output "$@"
