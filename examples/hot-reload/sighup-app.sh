#!/bin/sh
# A stand-in for any program that re-reads its configuration on SIGHUP
# (nginx, HAProxy, many daemons): it knows nothing about Kubernetes or kstrata.
#
#   CONFIG=/etc/app/config.yaml [STATUS=file] [PIDFILE=file] sh sighup-app.sh
#
# On start and on every SIGHUP it "loads" $CONFIG (copies it to $STATUS, so
# demo.py can see what it has); SIGTERM/SIGINT end it.  With $PIDFILE set it
# writes its pid there, for `kstrata watch --pidfile` in a sidecar.

CONFIG=${CONFIG:-/etc/app/config.yaml}
STATUS=${STATUS:-}
sleeper=

load() {
    if [ -n "$STATUS" ]; then
        cp "$CONFIG" "$STATUS.tmp" && mv "$STATUS.tmp" "$STATUS"
    fi
    echo "sighup-app: loaded $CONFIG ($(wc -l < "$CONFIG") lines)"
}

stop() {
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    echo "sighup-app: stopped"
    exit 0
}

trap load HUP
trap stop TERM INT
[ -n "${PIDFILE:-}" ] && echo $$ > "$PIDFILE"
load
# `wait` returns early when a trapped signal arrives, so reloads are immediate;
# the same sleeper is waited on again (a new one each time would pile up).
sleep 60 &
sleeper=$!
while :; do
    wait "$sleeper"
    if ! kill -0 "$sleeper" 2>/dev/null; then
        sleep 60 &
        sleeper=$!
    fi
done
