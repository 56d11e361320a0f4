#!/usr/bin/env bash
# Runs Deno's npm and Python SDKs against a freshly started local sandbox server on a free
# loopback port, then stops it. Needs root (bubblewrap as another uid, cgroups) and local/install.sh.
# Usage: local/conformance/run.sh            (builds with cargo first)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build -q -p deno-sandbox-local
binary="$target/debug/deno-sandbox-local"

port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
state=$(mktemp -d /tmp/deno-sandbox-conformance.XXXXXX)
chmod 711 "$state"
token=ddo_conformance$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
log="$state/server.log"

DENO_LOCAL_TOKENS="$token" DENO_LOCAL_PORT="$port" DENO_LOCAL_STATE="$state/sandboxes" \
  DENO_LOCAL_DENO_BIN="$root/.venv/bin/deno" "$binary" >"$log" 2>&1 &
server=$!
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$state"
}
trap stop EXIT

for _ in $(seq 1 100); do
  grep -q "listening on" "$log" && break
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done

export DENO_SANDBOX_ENDPOINT="http://127.0.0.1:$port"
export DENO_DEPLOY_ENDPOINT="http://127.0.0.1:$port"
export DENO_DEPLOY_TOKEN="$token"

status=0
echo "== npm @deno/sandbox (Node $(local/node_modules/.bin/node --version))"
(cd local && node_modules/.bin/node --test conformance/npm_sdk.test.mjs) || status=1
echo "== PyPI deno-sandbox"
.venv/bin/python -m pytest -q local/conformance/test_python_sdk.py || status=1
if [ "$status" -ne 0 ]; then
  echo "== server log" >&2
  tail -n 50 "$log" >&2
fi
exit "$status"
