#!/usr/bin/env bash
# Runs the benchmark harness (tests/benches/tool_calls.rs) against the local stack: installs the
# stack's tools, builds the sandbox server, the release function binaries and the harness, starts
# the stack on loopback, runs the harness, and stops the stack again (also on failure). The
# harness prints Markdown tables for BENCHMARKS.md on stdout; they are also kept in
# local/.state/bench.md. Ports come from LOCAL_DYNAMODB_PORT, LOCAL_KMS_PORT, LOCAL_SANDBOX_PORT.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=.venv/bin/python
functions=()
for directory in functions/*/; do
  functions+=(-p "$(basename "$directory")")
done

phase() { printf '\n==> %s\n' "$*" >&2; }

phase "install the local stack's tools (skipped when up to date)"
bash local/install.sh >&2

phase "build the sandbox server (debug, as the stack runs it)"
cargo build -p deno-sandbox-local >&2

phase "build the function binaries (release; the first build takes 10-20 minutes on two cores)"
cargo build --release "${functions[@]}" >&2

# The harness itself builds with the dev profile by default: with the bench profile, feature
# unification with the tests package rebuilds the whole optimized AWS SDK a second time (over
# 30 minutes on two cores). The function binaries it starts are the release ones either way.
# BENCH_PROFILE=release builds the harness optimized too.
profile=${BENCH_PROFILE:-dev}
phase "build the harness ($profile profile)"
cargo bench --profile "$profile" -p integration-tests --bench tool_calls --no-run >&2

stop_stack() {
  phase "stop the local stack"
  "$python" local/stack.py stop >&2 || true
}
trap stop_stack EXIT
phase "start the local stack"
"$python" local/stack.py start --sandbox-server >&2

phase "run the harness"
cargo bench --profile "$profile" -p integration-tests --bench tool_calls | tee local/.state/bench.md
