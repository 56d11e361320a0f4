#!/usr/bin/env bash
# Runs the product locally: installs the local stack's tools, builds the functions, starts the
# local stack and `cargo lambda watch` on loopback, sends a tool call through `cargo lambda
# invoke`, prints the response, and stops everything it started (also on Ctrl-C or failure).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=.venv/bin/python
watch_port=${LOCAL_WATCH_PORT:-19000}
watch_pid=

phase() { printf '\n==> %s\n' "$*"; }

cleanup() {
  if [ -n "$watch_pid" ] && kill -0 "$watch_pid" 2>/dev/null; then
    kill -TERM -- "-$watch_pid" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
  fi
  "$python" local/stack.py stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

phase "install the local stack's tools (skipped when up to date)"
bash local/install.sh

phase "build the functions (the first build takes 10-15 minutes on two cores)"
cargo build --workspace --bins

phase "start the local stack"
"$python" local/stack.py start --sandbox-server
set -a
. local/.state/stack.env
set +a
export PATH="$root/.venv/bin:$PATH"

phase "start cargo lambda watch on 127.0.0.1:$watch_port"
setsid cargo lambda watch -A 127.0.0.1 -P "$watch_port" >local/.state/watch.log 2>&1 &
watch_pid=$!
for _ in $(seq 1 120); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$watch_port") 2>/dev/null; then break; fi
  sleep 0.5
done

phase "invoke deno_list_sandboxes with tests/fixtures/events/deno_list_sandboxes.json"
cargo lambda invoke -A 127.0.0.1 -P "$watch_port" deno_list_sandboxes \
  --data-file tests/fixtures/events/deno_list_sandboxes.json
echo
