#!/usr/bin/env bash
# `make up`: serve the parent on 127.0.0.1:8001 from data/ (SQLite), after `werss-parent init`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export WERSS_DATABASE_URL="${WERSS_DATABASE_URL:-sqlite:///data/parent.db}"
if [ -z "${WERSS_SECRET_KEY:-}" ]; then
  export WERSS_SECRET_KEY_FILE="${WERSS_SECRET_KEY_FILE:-data/secret_key}"
fi
PORT="${PORT:-8001}"
cat <<MSG

WeRSS Cascade parent on http://127.0.0.1:${PORT}  (database: ${WERSS_DATABASE_URL})
  Log in:       curl -s -X POST http://127.0.0.1:${PORT}/api/v1/auth/login \\
                  -H 'Content-Type: application/json' -d '{"username":"admin","password":"<password>"}'
  Create node:  curl -s -X POST http://127.0.0.1:${PORT}/api/v1/cascade/nodes \\
                  -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
                  -d '{"name":"child-1","node_type":1}'
  (The admin password was printed above the first time; reset it with
   .venv/bin/werss-parent create-admin --username admin)
Stop with Ctrl-C.

MSG
exec "$BIN/werss-parent" serve --bind "127.0.0.1:${PORT}"
