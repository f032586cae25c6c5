#!/usr/bin/env bash
# Create .venv and install the project with its dev tools. Safe to re-run.
# torch==2.13.0 goes first: it is the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, recsys; print("torch", torch.__version__, "recsys", recsys.__version__)'))"
