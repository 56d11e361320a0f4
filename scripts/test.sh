#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, the unit tests and the integration tests against
# the local stack, which it starts on loopback and stops again, and finally the demo
# (scripts/demo.sh). This is the README's test command and what CI runs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=.venv/bin/python

phase() { printf '\n==> %s\n' "$*"; }

phase "install the local stack's tools (skipped when up to date)"
bash local/install.sh

phase "template checks: cfn-lint, sam validate --lint, functions and IAM policies"
bash scripts/check_template.sh

phase "cargo fmt --check"
cargo fmt --all --check

phase "build the workspace (the first build takes 10-15 minutes on two cores)"
cargo build --workspace --all-targets

phase "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

phase "start the local stack"
started_here=false
if [ ! -f local/.state/stack.env ]; then
  started_here=true
fi
stop_stack() {
  if [ "$started_here" = true ]; then
    phase "stop the local stack"
    "$python" local/stack.py stop
  fi
}
trap stop_stack EXIT
"$python" local/stack.py start --sandbox-server

phase "cargo test"
cargo test --workspace 2>&1 | tee local/.state/cargo-test.log

# One closing line with the totals of every test binary, so the summary does not depend on which
# binary happened to run last.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "\ntotal: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' \
  local/.state/cargo-test.log >local/.state/test-summary.txt

stop_stack
started_here=false
trap - EXIT

phase "release build of every function for Lambda (x86_64; the first one takes about 15 minutes)"
bash scripts/build_functions.sh x86_64

# Last: the demo, which plays a whole agent session through the functions under
# `cargo lambda watch`. It starts and stops its own stack on the same ports (or reuses a stack
# that was running before this script) and exits non-zero when a step's result is wrong.
phase "make demo: an agent session through the functions' HTTP routes"
demo_status=0
bash scripts/demo.sh || demo_status=$?

if [ "$demo_status" -ne 0 ]; then
  echo "demo: failed (exit status $demo_status)"
else
  echo "demo: every step succeeded"
fi
# The totals stay the last line, where CI looks for them.
cat local/.state/test-summary.txt
exit "$demo_status"
