#!/usr/bin/env bash
# Run the whole test suite: sets up what is missing first (idempotent), then pytest.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
