#!/usr/bin/env bash
# Install headless Chromium and its WebDriver from Debian packages, for the browser tests
# (tests/inspect). Idempotent: does nothing when both are already on PATH. Needs root (CI and
# the developers' machines run as root); prints what it does on stderr.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-browser: chromium is missing and installing it needs root; run: sudo $0" >&2
    exit 1
fi
echo "install-browser: installing chromium and chromium-driver (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-liberation >&2
command -v chromium >/dev/null && command -v chromedriver >/dev/null
