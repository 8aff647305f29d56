#!/usr/bin/env bash
# `make up`: the parent on 127.0.0.1:$PORT (SQLite under data/) plus one local child.
# Run after `werss-parent init` (the Makefile does). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export WERSS_DATABASE_URL="${WERSS_DATABASE_URL:-sqlite:///data/parent.db}"
if [ -z "${WERSS_SECRET_KEY:-}" ]; then
  export WERSS_SECRET_KEY_FILE="${WERSS_SECRET_KEY_FILE:-data/secret_key}"
fi
PORT="${PORT:-8001}"
CHILD_ENV=data/child.env
CHILD_HEALTH="127.0.0.1:${CHILD_HEALTH_PORT:-8011}"

# The local child's credentials: issued once, kept (mode 0600) in data/child.env, which
# is the child's own configuration. If that file was lost, the pair is rotated.
if [ ! -s "$CHILD_ENV" ]; then
  out=$("$BIN/werss-parent" create-node --name local-child --credentials --if-missing)
  if ! grep -q '^api_key:' <<<"$out"; then
    node_id=$(awk '/exists:/ {print $NF}' <<<"$out")
    out=$("$BIN/werss-parent" rotate-credentials "$node_id")
  fi
  (umask 077 && {
    echo "CASCADE_API_KEY=$(awk '/^api_key:/ {print $2}' <<<"$out")"
    echo "CASCADE_API_SECRET=$(awk '/^api_secret:/ {print $2}' <<<"$out")"
  } > "$CHILD_ENV")
  echo "local child registered; its credentials are in $CHILD_ENV"
fi

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Refuse a taken port before anything starts: a probe would reach whatever holds it.
"$BIN/python" - "127.0.0.1:${PORT}" <<'PY' || exit 1
import sys
from parent.gunicorn_app import BindError, check_bind
try:
    check_bind(sys.argv[1])
except BindError as exc:
    sys.exit(f"werss-parent: {exc}")
PY
"$BIN/werss-parent" serve --bind "127.0.0.1:${PORT}" &
parent_pid=$!
pids+=($parent_pid)
if ! "$BIN/python" - "$PORT" "$parent_pid" <<'PY'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
for _ in range(300):
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)  # serve exited: its reason is printed above
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"the parent did not answer http://127.0.0.1:{port}/healthz within 60 s")
PY
then
  echo "make up: the parent did not start (see above)" >&2
  exit 1
fi

set -a; . "$CHILD_ENV"; set +a
# This child is a child whatever a shared config.yaml says about node_type; its
# heartbeat and sync intervals are the ones the parent hands out.
CASCADE_ENABLED=true CASCADE_NODE_TYPE=1 CASCADE_PARENT_URL="http://127.0.0.1:${PORT}" \
  CASCADE_DATA_DIR=data/child CASCADE_HEALTH_LISTEN="$CHILD_HEALTH" \
  CASCADE_ALLOW_PRIVATE_ADDRESSES=true \
  "$BIN/werss-child" run &
pids+=($!)

cat <<MSG

WeRSS Cascade is up:
  parent  http://127.0.0.1:${PORT}   (database ${WERSS_DATABASE_URL})
  child   local-child, health at http://${CHILD_HEALTH}/healthz
  console http://127.0.0.1:${PORT}/   (管理后台, the admin console)
Log in as 'admin' (the password was printed above the first time; reset it, from
  this directory, with .venv/bin/werss-parent create-admin --username admin).
See a task flow end to end:  make demo   (in another terminal)
Stop with Ctrl-C.

MSG
wait -n "${pids[@]}"
