#!/usr/bin/env bash
# Runs the product locally, end to end. It installs the local stack's tools, builds the functions
# and starts DynamoDB Local, the KMS emulator and the local sandbox server. Then it serves the
# functions with `cargo lambda watch` and plays an agent session through their HTTP routes
# (scripts/demo_session.py). Everything listens on 127.0.0.1. Exits non-zero when a step fails.
#
#   scripts/demo.sh          run the session, then stop everything it started (also on Ctrl-C)
#   scripts/demo.sh --keep   run the session, then leave the stack, the functions and one sandbox
#                            running and print how to call a tool with curl and cargo lambda
#   scripts/demo.sh --stop   stop what --keep left running
#
# Ports: LOCAL_WATCH_PORT (19000) for the functions, plus the stack's LOCAL_DYNAMODB_PORT,
# LOCAL_KMS_PORT and LOCAL_SANDBOX_PORT.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=.venv/bin/python
state=local/.state
watch_port=${LOCAL_WATCH_PORT:-19000}
watch_pid_file=$state/watch.pid

mode=run
case "${1:-}" in
  "") ;;
  --keep) mode=keep ;;
  --stop) mode=stop ;;
  *)
    echo "usage: scripts/demo.sh [--keep | --stop]" >&2
    exit 2
    ;;
esac

phase() { printf '\n==> %s\n' "$*"; }

# Stops the recorded `cargo lambda watch` process group, which includes the functions it spawned.
stop_watch() {
  local pid
  pid=$(cat "$watch_pid_file" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "demo: cargo lambda watch stopped (pid $pid)"
  fi
  rm -f "$watch_pid_file"
}

if [ "$mode" = stop ]; then
  stop_watch
  if [ -x "$python" ]; then
    "$python" local/stack.py stop
  fi
  exit 0
fi

stack_started_here=false
watch_started_here=false
leave_running=false
cleanup() {
  local status=$?
  if [ "$leave_running" = true ]; then
    return
  fi
  phase "stop what the demo started"
  # Only the watch process this run started: another run's (say, of make demo-keep) stays up.
  if [ "$watch_started_here" = true ]; then
    stop_watch
  fi
  if [ "$stack_started_here" = true ]; then
    "$python" local/stack.py stop || true
  else
    echo "demo: the local stack was running before the demo, so it stays up"
  fi
  if [ "$status" -eq 130 ]; then
    echo "demo: interrupted" >&2
  elif [ "$status" -ne 0 ]; then
    echo "demo: failed (exit status $status); the functions' log is $state/watch.log" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

phase "install the local stack's tools (first run: 2-4 minutes; later runs: a second)"
bash local/install.sh

# cargo shows a progress bar with the number of crates built so far when stderr is a terminal.
phase "build the functions and the sandbox server (from scratch: about 6-15 minutes on two cores; afterwards: seconds to a minute)"
cargo build --workspace --bins

phase "start the local stack"
# grep reads the whole status first: with -q on a pipe it would stop early, and pipefail would
# turn the status script's broken pipe into "not running".
stack_status=$("$python" local/stack.py status)
if grep -q running <<<"$stack_status"; then
  echo "demo: reusing the running local stack"
else
  stack_started_here=true
fi
"$python" local/stack.py start --sandbox-server
set -a
. "$state/stack.env"
set +a
export PATH="$root/.venv/bin:$PATH"

phase "serve the functions with cargo lambda watch on 127.0.0.1:$watch_port"
earlier_pid=$(cat "$watch_pid_file" 2>/dev/null || true)
if [ -n "$earlier_pid" ] && kill -0 "$earlier_pid" 2>/dev/null; then
  echo "demo: the functions of an earlier make demo-keep still run (pid $earlier_pid); run make demo-stop first" >&2
  exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$watch_port") 2>/dev/null; then
  echo "demo: port $watch_port on 127.0.0.1 is in use; stop that process or set LOCAL_WATCH_PORT" >&2
  exit 1
fi
# setsid puts watch and the functions it spawns in their own process group, which stop_watch ends.
setsid cargo lambda watch -A 127.0.0.1 -P "$watch_port" >"$state/watch.log" 2>&1 </dev/null &
echo $! >"$watch_pid_file"
watch_started_here=true
ready=false
for _ in $(seq 1 120); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$watch_port") 2>/dev/null; then
    ready=true
    break
  fi
  if ! kill -0 "$(cat "$watch_pid_file")" 2>/dev/null; then
    break
  fi
  sleep 0.5
done
if [ "$ready" != true ]; then
  echo "demo: cargo lambda watch did not listen on 127.0.0.1:$watch_port within 60 s; its log ends with:" >&2
  tail -n 20 "$state/watch.log" >&2
  exit 1
fi
echo "demo: functions served on http://127.0.0.1:$watch_port/lambda-url/<function>/<route>; log in $state/watch.log"

phase "play an agent session through the functions' HTTP routes"
if [ "$mode" = keep ]; then
  "$python" scripts/demo_session.py --port "$watch_port" --keep-sandbox "$state/events"
  leave_running=true
else
  "$python" scripts/demo_session.py --port "$watch_port"
fi
