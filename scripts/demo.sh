#!/usr/bin/env bash
# The demo: a sandbox host namespace with an uplink namespace that plays the internet;
# tether applies manifests/ (the seed walkthrough) there, prints what can reach what,
# and cleans everything up — even when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npx tsx scripts/demo.ts "$@"
