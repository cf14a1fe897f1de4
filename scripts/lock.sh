#!/usr/bin/env bash
# Refresh requirements/lock.txt: every Python package the README's set-up installs, at one version each.
# Run after changing a dependency in pyproject.toml, then reinstall (`pip install -c requirements/lock.txt -e '.[dev]'`),
# regenerate the stubs (`python scripts/gen_protos.py`) and run the tests before committing both files.
# Needs `uv` (pip install uv); the lock itself installs with plain pip. torch stays at the README's pin.
set -euo pipefail
cd "$(dirname "$0")/.."
# the current lock is the starting point: uv keeps its versions where they still fit (add --upgrade to move them)
cp requirements/lock.txt requirements/lock.txt.new
uv pip compile pyproject.toml --extra dev --extra load --extra docs \
  --constraint <(printf 'torch==2.14.1\ntorchvision==0.29.1\n') \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-header --annotation-style line -o requirements/lock.txt.new
{ echo '# The versions CI tested: every package the README set-up installs. Refresh: bash scripts/lock.sh (GPU extra not locked).'
  sed 's|, -c /dev/fd/[0-9]*||' requirements/lock.txt.new; } > requirements/lock.txt
rm requirements/lock.txt.new
