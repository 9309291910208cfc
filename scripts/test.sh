#!/usr/bin/env bash
# The test command: installs what is missing, type-checks and lints, then runs the unit tests and
# the kernel tests (in sandbox namespaces). Kernel tests fail — never skip — when the
# machine cannot run them (not root, no nft, …). Ends with "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_COLOR=1
npx tsc --noEmit -p .
npx biome check src test scripts
report="$(mktemp -t tether-vitest-XXXXXX.json)"
trap 'rm -f "$report"' EXIT
rc=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || rc=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$report" || true
exit "$rc"
