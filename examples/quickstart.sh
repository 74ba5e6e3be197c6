#!/usr/bin/env bash
# dynas quickstart: set up ./.venv (first run only), then search examples/quickstart.yaml.
#
#   bash examples/quickstart.sh [extra `dynas search` options, e.g. --trials 24 --strategy tpe]
#
# 1. .ci/setup creates .venv and installs dynas with its dependencies. A torch already
#    in .venv is kept (install your CUDA build there first); otherwise DYNAS_TORCH
#    (default torch==2.13.0) is installed.
# 2. `dynas search examples/quickstart.yaml`: 6 architectures on Split-Digits, two at a
#    time on a private local Ray instance, then the report. The run directory and its
#    report.md are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
exec .venv/bin/dynas search examples/quickstart.yaml "$@"
