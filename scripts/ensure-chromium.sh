#!/bin/sh
# The browser tests (tests/test_console_browser_devserver.py) drive Debian's Chromium through
# Playwright. Install it when it is missing and we may (root with apt-get); otherwise say how.
set -e
CHROMIUM="${DUNNING_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Chromium for the browser tests (apt-get install chromium)"
    apt-get install -y --no-install-recommends chromium >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
    exit 0
fi
echo "note: $CHROMIUM is missing, so the console's browser tests cannot run (they fail saying so)." >&2
echo "      install it with: sudo apt-get install chromium (or set DUNNING_CHROMIUM)" >&2
