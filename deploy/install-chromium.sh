#!/usr/bin/env bash
# Install Debian's Chromium (and a CJK font, so screenshots show Chinese) for the console's
# browser tests. Playwright drives it through executable_path; its own browser download
# cannot work here. Needs root.
set -euo pipefail
PACKAGES=(chromium fonts-wqy-microhei)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Another apt run may hold the lock for a while: wait for it instead of failing.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v chromium
