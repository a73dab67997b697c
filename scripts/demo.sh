#!/bin/sh
# make demo: set up, build, and show monalpushd running on loopback with
# a built-in configuration under a temporary directory: a throwaway test
# CA and certificates, the four processes, monalpushctl show status, the
# log lines.  Stops everything it started.
set -e
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root: the daemon chroots and drops privileges" >&2
	exit 1
fi
sh scripts/setup.sh
make --no-print-directory -s all

D=$(mktemp -d /tmp/monalpushd-demo.XXXXXX)
chmod 0755 "$D"
DPID=""
stop() {
	[ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
	rm -rf "$D"
}
trap stop EXIT
trap 'exit 1' INT TERM

echo "== 1. a test CA and certificates in $D"
sh regress/ca.sh "$D" push.localhost >/dev/null 2>&1
PORT=$(/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$D/monalpush.conf" <<CONF
# built-in demo configuration: loopback only, everything under $D
listen on 127.0.0.1 port $PORT
domain "push.localhost" {
	certificate "$D/push.localhost.pem"
	key "$D/push.localhost.key"
}
app "monalProdiOS" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	host "127.0.0.1"
	port 443
	certificate "$D/push.localhost.pem"
	key "$D/push.localhost.key"
	default
}
log directory "$D/log"
database "$D/db"
control socket "$D/monalpushd.sock"
CONF
./monalpushd -n -f "$D/monalpush.conf"

echo "== 2. monalpushd -d on 127.0.0.1 port $PORT"
./monalpushd -d -f "$D/monalpush.conf" >"$D/stderr" 2>&1 &
DPID=$!
n=100
until grep -q "startup:" "$D/stderr"; do
	n=$((n - 1))
	if [ $n -eq 0 ] || ! kill -0 $DPID 2>/dev/null; then
		cat "$D/stderr"; exit 1
	fi
	sleep 0.1
done

echo "== 3. monalpushctl show status"
monalpushctl/monalpushctl -s "$D/monalpushd.sock" show status

echo "== 4. the processes"
ps -o pid,user,args --ppid $DPID -p $DPID

echo "== 5. monalpushctl show registrations"
monalpushctl/monalpushctl -s "$D/monalpushd.sock" show registrations

echo "== 6. stopping; the log file logd wrote:"
kill -TERM $DPID
wait $DPID || true
DPID=""
cat "$D"/log/monalpush-*.log
