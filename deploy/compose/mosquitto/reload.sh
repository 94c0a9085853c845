#!/bin/sh
# Sidecar sharing Mosquitto's pid namespace: when the project rewrites passwd or acl
# (the api after a device is claimed, replaced or retired), tell the broker to re-read
# them with SIGHUP. Polls every few seconds: busybox has no inotify tool.
set -u
dir=/mosquitto/auth
last=""
while :; do
    now=$(cat "$dir/passwd" "$dir/acl" 2>/dev/null | md5sum)
    if [ -n "$last" ] && [ "$now" != "$last" ]; then
        pid=$(pidof mosquitto || true)
        if [ -n "$pid" ] && kill -HUP $pid; then
            echo "passwd/acl changed: mosquitto ($pid) reloaded"
        fi
    fi
    last=$now
    sleep "${RELOAD_INTERVAL_S:-3}"
done
