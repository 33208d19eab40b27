#!/bin/sh
# Wrapper mode: one container runs the application *and* `kstrata watch`,
# which signals it by pid.  Use it as the container's entrypoint:
#
#   entrypoint.sh APP [ARGS...]
#
# WATCH_DIR (default /etc/app), WATCH_FILE (default config.yaml), WATCH_SCHEMA
# (optional JSON Schema file) and KSTRATA (default: kstrata) configure it.
# The script forwards SIGTERM to both, and exits with the application's status.
set -u

"$@" &
app=$!

# shellcheck disable=SC2086  # KSTRATA may be a command with arguments
${KSTRATA:-kstrata} watch "${WATCH_DIR:-/etc/app}" --file "${WATCH_FILE:-config.yaml}" \
    ${WATCH_SCHEMA:+--schema "$WATCH_SCHEMA"} --signal HUP --pid "$app" &
watcher=$!

trap 'kill -TERM "$app" "$watcher" 2>/dev/null' TERM INT

status=0
wait "$app" || status=$?
# A trapped signal interrupts `wait`: wait again until the application has exited.
while kill -0 "$app" 2>/dev/null; do
    wait "$app" || status=$?
done
kill -TERM "$watcher" 2>/dev/null
wait "$watcher" 2>/dev/null
exit "$status"
