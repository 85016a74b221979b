#!/usr/bin/env bash
# docs/configuration.md carries the output of `kdstep config --reference` verbatim.
set -euo pipefail
ref=$("$KDSTEP" config --reference)
doc=$(sed -n '/^| key | type | default | meaning |$/,$p' "$KD_SOURCE_DIR/docs/configuration.md")
if [[ "$ref" != "$doc" ]]; then
  echo "docs/configuration.md is out of date; regenerate the table with: kdstep config --reference" >&2
  diff <(echo "$ref") <(echo "$doc") | head -20 >&2
  exit 1
fi
echo "docs/configuration.md matches kdstep config --reference"
