#!/usr/bin/env bash
# Installs what tether, its demo and its tests need, when missing: Debian packages
# (iproute2, nftables, util-linux's nsenter, ping, dig, git, python3, systemd-analyze) and
# the npm packages.
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
# The daemon tests: a stand-in for systemd's notify socket (python3), the unit file check
# (systemd-analyze; installing the package starts nothing where systemd is not PID 1).
command -v python3 >/dev/null || need+=(python3)
command -v systemd-analyze >/dev/null || need+=(systemd)
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

# The setns addon (native/setns.c): lets tether read container namespaces in-process.
# Optional: without a C compiler or Node's headers tether falls back to one `ip` process
# per namespace.
addon=native/build/setns.node
if [[ ! -f $addon || native/setns.c -nt $addon ]]; then
  inc=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node
  if command -v cc >/dev/null && [[ -f $inc/node_api.h ]]; then
    mkdir -p native/build
    cc -shared -fPIC -O2 -I"$inc" native/setns.c -o "$addon.tmp" && mv -f "$addon.tmp" "$addon"
  else
    echo "setup: no C compiler or Node headers: container namespaces will be read with ip (slower)" >&2
  fi
fi
