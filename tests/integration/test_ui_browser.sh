#!/usr/bin/env bash
# test_ui_browser.sh: the web page at / in a real headless Chromium (tests/browser/test_ui.js:
# Debian's chromium driven by puppeteer-core, npm packages from `scripts/deps.sh test`).
set -u
cd "$(dirname "$0")/../.."
if [ ! -d tests/browser/node_modules/puppeteer-core ] || ! command -v node >/dev/null || [ ! -x /usr/bin/chromium ]; then
  echo "FAIL test_ui_browser: node, chromium or tests/browser/node_modules missing (run scripts/deps.sh test)"
  echo "0 passed, 1 failed"
  exit 1
fi
exec node tests/browser/test_ui.js
