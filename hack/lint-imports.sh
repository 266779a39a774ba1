#!/usr/bin/env bash
# Check the import layers (pyproject.toml [tool.importlinter]) with import-linter.
# The operator ships as `selfguide_operator` from operator/, which has no __init__.py on purpose (a top-level
# `operator` package would shadow the standard library's); import-linter needs a regular package, so it reads
# a copy that has one.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-$root/.venv/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/operator" "$work/selfguide_operator"
touch "$work/selfguide_operator/__init__.py"
cd "$root"
PYTHONPATH="$work:$root" "$bin/lint-imports" --no-cache
