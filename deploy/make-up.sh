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

"$BIN/werss-parent" serve --bind "127.0.0.1:${PORT}" &
pids+=($!)
"$BIN/python" - "$PORT" <<'PY'
import sys, time, urllib.request
for _ in range(150):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.2)
PY

set -a; . "$CHILD_ENV"; set +a
# This child is a child whatever a shared config.yaml says about node_type; its
# heartbeat and sync intervals are the ones the parent hands out.
CASCADE_ENABLED=true CASCADE_NODE_TYPE=1 CASCADE_PARENT_URL="http://127.0.0.1:${PORT}" \
  CASCADE_DATA_DIR=data/child CASCADE_HEALTH_LISTEN="$CHILD_HEALTH" \
  "$BIN/werss-child" run &
pids+=($!)

cat <<MSG

WeRSS Cascade is up:
  parent  http://127.0.0.1:${PORT}   (database ${WERSS_DATABASE_URL})
  child   local-child, health at http://${CHILD_HEALTH}/healthz
Log in as 'admin' (the password was printed above the first time; reset it with
  .venv/bin/werss-parent create-admin --username admin).
See a task flow end to end:  make demo   (in another terminal)
Stop with Ctrl-C.

MSG
wait -n "${pids[@]}"
