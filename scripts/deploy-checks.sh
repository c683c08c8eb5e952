#!/usr/bin/env bash
# Offline deployment checks: cfn-lint on template.yaml (no errors, no warnings) and `sam validate --lint`.
# Installs the pinned tools of scripts/requirements-deploy.txt into .venv on first use (PyPI is only needed then)
# and again only when that file changes. Quiet on success: one summary line per check.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
REQUIREMENTS=scripts/requirements-deploy.txt
STAMP="$VENV/.requirements-deploy.sha256"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

fail() {
  printf 'deploy-checks: %s\n' "$1" >&2
  if [ -s "$LOG" ]; then sed 's/^/  | /' "$LOG" >&2; fi
  exit 1
}

# 1. The pinned tools, installed idempotently.
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/cfn-lint" ] || [ ! -x "$VENV/bin/sam" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  command -v python3 >/dev/null || fail "python3 (3.11+) is required"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >"$LOG" 2>&1 || fail "could not create $VENV"
  if ! { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
      && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"; } >"$LOG" 2>&1; then
    fail "could not install $REQUIREMENTS into $VENV (PyPI is needed on first use only)"
  fi
  printf '%s\n' "$want" >"$STAMP"
  echo "ok   tools: installed $(tr '\n' ' ' < <(grep -E '^[a-z]' "$REQUIREMENTS")) into $VENV"
fi

# Nothing below needs the network: no telemetry, a fixed region, no credentials (validation is local).
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" AWS_REGION="${AWS_REGION:-us-east-1}"

# 2. cfn-lint: any error, warning or even informational finding fails. Rules are never ignored from here; a
#    justified exception would live in template.yaml's Metadata.
if "$VENV/bin/cfn-lint" --format parseable --include-checks I -- template.yaml >"$LOG" 2>&1; then
  echo "ok   cfn-lint $("$VENV/bin/cfn-lint" --version | awk '{print $2}'): template.yaml has no errors, warnings or notices"
else
  fail "cfn-lint found problems in template.yaml:"
fi

# 3. sam validate --lint: the SAM translator's own checks, then cfn-lint on the expanded template.
if "$VENV/bin/sam" validate --lint --template-file template.yaml >"$LOG" 2>&1; then
  echo "ok   sam validate --lint ($("$VENV/bin/sam" --version | awk '{print $4}')): template.yaml is a valid SAM template"
else
  if grep -qiE 'could not connect|endpoint url|unable to locate credentials|name resolution|timed out' "$LOG"; then
    fail "sam validate --lint needed the network or AWS credentials, which it should not; output:"
  fi
  fail "sam validate --lint rejected template.yaml:"
fi
