#!/usr/bin/env bash
# A report page as a PNG, by headless Chromium with a throwaway profile (offline: no network, no sync).
# Usage: bash scripts/screenshot.sh PAGE.html OUT.png WIDTH,HEIGHT
set -euo pipefail
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --window-size="$3" --screenshot="$(realpath "$2")" "file://$(realpath "$1")" 2>/dev/null
