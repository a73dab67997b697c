#!/bin/sh
# logd: daily files, the purge of files past the retention at start,
# privacy of the file names it touches, and a write error (a full file
# system) counted and survived.
. "$(dirname "$0")/lib.sh"
need_root "logd tests"

day() { date -u -d "@$(( $(date +%s) - $1 * 86400 ))" +%Y-%m-%d; }

d=$(conf_base purge)
mkdir -p "$d/log"
for age in 20 15 14 13 1; do
	echo "old line" >"$d/log/monalpush-$(day $age).log"
done
echo "not ours" >"$d/log/monalpush-notes.txt"
echo "not ours" >"$d/log/other-$(day 20).log"
start_daemon "$d" || { fail "daemon starts"; finish; }
wait_for "$d/stderr" "purged 3 log files" || true
for age in 20 15 14; do
	check "file dated $age days ago deleted" [ ! -e "$d/log/monalpush-$(day $age).log" ]
done
for age in 13 1; do
	check "file dated $age days ago kept" [ -e "$d/log/monalpush-$(day $age).log" ]
done
check "files logd does not name are untouched" \
    [ -e "$d/log/monalpush-notes.txt" -a -e "$d/log/other-$(day 20).log" ]
today=$d/log/monalpush-$(date -u +%Y-%m-%d).log
check "today's file holds the startup line" grep -q " parent info: startup:" "$today"
check "lines start with an ISO 8601 UTC time" \
    sh -c "grep -Evq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z (parent|xmppe|apnse|logd) (info|warning|debug): ' '$today' && exit 1 || exit 0"
kill -TERM "$DPID"; wait "$DPID"

# A full file system: lines are dropped and counted, the daemon serves,
# and once there is room again logd writes again.
d=$(conf_base full)
mkdir -p "$d/log"
cat >"$T/full.sh" <<SH
set -e
mount -t tmpfs -o size=64k,mode=0755 tmpfs "$d/log"
"$DAEMON" -d -f "$d/monalpush.conf" >"$d/stderr" 2>&1 &
echo \$! >"$d/pid"
wait \$!
SH
unshare -m --propagation private sh "$T/full.sh" &
UPID=$!
PIDS="$PIDS $UPID"
if ! wait_for "$d/stderr" "startup:"; then
	fail "daemon starts on a small tmpfs"
	finish
fi
DPID=$(cat "$d/pid")
lognow() { nsenter -t "$DPID" -m sh -c "$1"; }
lognow "dd if=/dev/zero of='$d/log/filler' bs=1k count=1000 2>/dev/null" || true
# Each reload writes lines; once the file's last page is full they
# cannot be written.  Reload until logd reports a dropped line.
dropped_lines() {
	"$CTL" -j -s "$d/sock" show status 2>/dev/null | /usr/bin/python3 -c '
import json, sys
print(sum(p.get("log_dropped", 0) for p in json.load(sys.stdin)["processes"]))'
}
i=0
dropped=0
while [ $i -lt 200 ] && [ "${dropped:-0}" -eq 0 ]; do
	"$CTL" -s "$d/sock" reload >/dev/null 2>&1
	dropped=$(dropped_lines)
	i=$((i + 1))
done
check "write errors counted in show status (dropped=$dropped after $i reloads)" \
    [ "${dropped:-0}" -gt 0 ]
check "daemon still serves with the disk full" kill -0 "$DPID"
lognow "rm -f '$d/log/filler'"
"$CTL" -s "$d/sock" reload >/dev/null 2>&1
lognow "grep -c 'configuration reloaded' $d/log/monalpush-*.log" >"$T/before" || true
"$CTL" -s "$d/sock" reload >/dev/null 2>&1
lognow "grep -c 'configuration reloaded' $d/log/monalpush-*.log" >"$T/after" || true
check "after room is back, lines are written again ($(cat $T/before) -> $(cat $T/after))" \
    [ "$(cat "$T/after")" -gt "$(cat "$T/before")" ]
kill -TERM "$DPID"
wait "$UPID"
finish
