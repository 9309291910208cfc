#!/usr/bin/env bash
# The test command: installs what is missing, type-checks, then runs the unit tests and
# the kernel tests (in sandbox namespaces). Kernel tests fail — never skip — when the
# machine cannot run them (not root, no nft, …).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_COLOR=1
npx tsc --noEmit -p .
npx vitest run "$@"
