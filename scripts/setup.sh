#!/usr/bin/env bash
# Installs what tether, its demo and its tests need, when missing: Debian packages
# (iproute2, nftables, util-linux's nsenter, ping, dig, git) and the npm packages.
# Idempotent; run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v nsenter >/dev/null || need+=(util-linux)
command -v ping >/dev/null || need+=(iputils-ping)
command -v dig >/dev/null || need+=(dnsutils)
command -v git >/dev/null || need+=(git)
command -v node >/dev/null || need+=(nodejs npm)
if ((${#need[@]})); then
  echo "setup: installing Debian packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
