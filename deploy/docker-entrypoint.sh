#!/bin/sh
# The image's entrypoint. A command starting with werss-child or werss-parent runs as it is;
# anything else is passed to `werss-parent serve` after `werss-parent db upgrade`.
# The upgrade is retried for up to WERSS_DB_WAIT seconds (60): a database started next to
# the parent (Compose's postgres profile) may take a few seconds to accept connections.
set -eu

case "${1:-}" in
  werss-child|werss-parent) exec "$@" ;;
esac

# As PID 1 the shell ignores SIGTERM unless told: `docker stop` must not wait out the retries.
trap 'exit 143' TERM INT
wait_limit=${WERSS_DB_WAIT:-60}
started=$(date +%s)
until werss-parent db upgrade; do
  if [ $(( $(date +%s) - started )) -ge "$wait_limit" ]; then
    echo "werss: the database upgrade failed for ${wait_limit} s (WERSS_DB_WAIT); giving up" >&2
    exit 1
  fi
  echo "werss: the database upgrade failed; retrying in 2 s" >&2
  sleep 2
done
exec werss-parent serve --bind 0.0.0.0:8001 "$@"
