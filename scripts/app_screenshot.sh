#!/usr/bin/env bash
# README's screenshot of `lapsrn app` (docs/app.png): the browser test's own run (tests/test_app.py), saved once
# its results show. Needs what .ci/run installs (.venv with .[test], Debian's chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
LAPSRN_APP_SCREENSHOT="$PWD/docs/app.png" .venv/bin/python -m pytest tests/test_app.py -q -p no:cacheprovider \
    -k test_upscale_compare_and_download_equal_the_command
echo "wrote docs/app.png"
