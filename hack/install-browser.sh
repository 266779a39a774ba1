#!/usr/bin/env bash
# The report test opens report.html in a real headless Chromium: install Debian's package when it is missing.
set -euo pipefail
for candidate in chromium chromium-browser google-chrome google-chrome-stable; do
  command -v "$candidate" >/dev/null 2>&1 && exit 0
done
if [[ $(id -u) -ne 0 ]]; then
  echo "Chromium is missing: run 'sudo apt-get install chromium' (the report test needs it)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
