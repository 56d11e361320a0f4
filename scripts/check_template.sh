#!/usr/bin/env bash
# Checks template.yaml without AWS access: cfn-lint (informational findings included),
# `sam validate --lint`, that the template deploys exactly the functions under functions/, and the
# least-privilege rules of the function and key policies. Exits non-zero on any finding. Needs the venv from local/install.sh (aws-sam-cli, cfn-lint).
#
# SAM CLI needs a region and credentials to start, even though validation calls no AWS API, so
# dummy ones are set here. It runs with a private HOME under local/.state, so it reads no real AWS
# profile, and with telemetry off and a fresh "last version check" time, so it skips its weekly
# PyPI request. Nothing leaves the machine; the checks pass with the network unplugged.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
template=template.yaml

for tool in cfn-lint sam python; do
  if [ ! -x ".venv/bin/$tool" ]; then
    echo "check_template.sh: .venv/bin/$tool is missing: run bash local/install.sh first" >&2
    exit 1
  fi
done

export AWS_DEFAULT_REGION=us-east-1
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=check-template-offline
export AWS_SECRET_ACCESS_KEY=check-template-offline
unset AWS_SESSION_TOKEN AWS_PROFILE
export SAM_CLI_TELEMETRY=0
sam_home="$root/local/.state/sam-home"
mkdir -p "$sam_home/.aws-sam"
printf '{"lastVersionCheck": %s.0, "telemetryEnabled": false}\n' "$(date +%s)" \
  >"$sam_home/.aws-sam/metadata.json"

failed=0

echo "==> cfn-lint $template"
if .venv/bin/cfn-lint --include-checks I -- "$template"; then
  echo "cfn-lint: no findings"
else
  failed=1
fi

echo "==> sam validate --lint"
if ! HOME="$sam_home" .venv/bin/sam validate --lint --template "$template"; then
  failed=1
fi

echo "==> template functions match functions/"
if ! .venv/bin/python scripts/check_template_functions.py "$template"; then
  failed=1
fi

echo "==> function and key policies are least-privilege"
if ! .venv/bin/python scripts/check_template_policies.py "$template"; then
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  echo "check_template.sh: FAILED" >&2
fi
exit "$failed"
