#!/usr/bin/env bash
# Make Debian's headless-capable Chromium available for the report's browser test.
#
# Why: tests/report checks that the HTML report really renders (every <img> loads) in a browser,
# which no HTML parser can prove. Idempotent and never fatal: when Chromium cannot be installed
# (not root, no apt-get, offline) it says why and exits 0, and the test skips with that reason.
#
# Usage: scripts/ensure_chromium.sh            (APIR_CHROMIUM_INSTALL_TIMEOUT=seconds, default 600)
set -u

for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "ensure_chromium: $(command -v "$name") is already installed"
        exit 0
    fi
done

if [ "$(id -u)" != "0" ]; then
    echo "ensure_chromium: chromium not found and not running as root; install it with: apt-get install chromium"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: chromium not found and apt-get is not available on this system"
    exit 0
fi

limit="${APIR_CHROMIUM_INSTALL_TIMEOUT:-600}"
echo "ensure_chromium: installing chromium with apt-get (timeout ${limit}s)..."
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
if timeout "$limit" apt-get update -qq \
    && timeout "$limit" apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    echo "ensure_chromium: installed $(command -v chromium) in $(( $(date +%s) - start ))s"
else
    echo "ensure_chromium: apt-get could not install chromium (offline, no permission or timeout)"
fi
exit 0
