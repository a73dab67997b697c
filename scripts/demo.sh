#!/bin/sh
# make demo: set up, build, and show monalpushd doing its job on loopback
# with a built-in configuration under a temporary directory: a throwaway
# test CA, the mock APNs, the daemon, a scripted user's server that
# registers a device over s2s and publishes to it; then what the mock
# received, monalpushctl's view and the log lines.  Stops everything it
# started.
set -e
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root: the daemon chroots and drops privileges" >&2
	exit 1
fi
sh scripts/setup.sh
make --no-print-directory -s all regress

D=$(mktemp -d /tmp/monalpushd-demo.XXXXXX)
chmod 0755 "$D"
DPID=""
trap 'stop' EXIT
trap 'exit 1' INT TERM

echo "== 1. a throwaway test CA and certificates in $D"
sh regress/ca.sh "$D" push.localhost example.test 127.0.0.1 >/dev/null 2>&1
free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_line() { # FILE PATTERN
	n=100
	until grep -q "$2" "$1" 2>/dev/null; do
		n=$((n - 1))
		[ $n -eq 0 ] && { cat "$1"; exit 1; }
		sleep 0.1
	done
}
MPID=""
stop() {
	[ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
	[ -n "$MPID" ] && kill -TERM "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null
	rm -rf "$D"
}

echo "== 2. the mock APNs (HTTP/2 over TLS, client certificate required)"
regress/mock_apns -p 0 -c "$D/127.0.0.1.pem" -k "$D/127.0.0.1.key" \
    -C "$D/ca.pem" -r "$D/apns.jsonl" >"$D/mock.out" 2>&1 &
MPID=$!
wait_line "$D/mock.out" "listening on"
MOCKPORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$D/mock.out")
echo "mock APNs on 127.0.0.1 port $MOCKPORT"

PORT=$(free_port)
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
	port $MOCKPORT
	certificate "$D/push.localhost.pem" key "$D/push.localhost.key"
	ca "$D/ca.pem"
	default
}
ca file "$D/ca.pem"
log directory "$D/log"
database "$D/db"
control socket "$D/monalpushd.sock"
CONF
./monalpushd -n -f "$D/monalpush.conf"

echo "== 3. monalpushd -d on 127.0.0.1 port $PORT"
./monalpushd -d -f "$D/monalpush.conf" >"$D/stderr" 2>&1 &
DPID=$!
wait_line "$D/stderr" "startup:"

echo "== 4. the user's server example.test registers a device over s2s"
NODE=$(cat /proc/sys/kernel/random/uuid)
TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
PEER="/usr/bin/python3 regress/s2speer.py connect --host 127.0.0.1 \
    --port $PORT --from example.test --to push.localhost \
    --cafile $D/ca.pem --cert $D/example.test.pem \
    --key $D/example.test.key --auth external --bidi"
$PEER register "node=$NODE" "token=$TOKEN" >"$D/reg.json"
SECRET=$(/usr/bin/python3 -c 'import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("step") == "register":
        print(d.get("secret") or ""); break' "$D/reg.json")
[ -n "$SECRET" ] || { cat "$D/reg.json" "$D/stderr"; exit 1; }
echo "registered: node $NODE, secret $(echo "$SECRET" | cut -c1-8)..."

echo "== 5. a message arrives: example.test publishes to the node"
$PEER publish "node=$NODE" "secret=$SECRET" "body=hello" | tail -1
wait_line "$D/apns.jsonl" "$TOKEN"

echo "== 6. the request the mock APNs received"
/usr/bin/python3 -c 'import json, sys
r = json.loads(open(sys.argv[1]).readline())
print("POST", r["path"], "->", r["status"])
for k in sorted(r["headers"]):
    print("  %s: %s" % (k, r["headers"][k]))
print("  body:", r["body"])' "$D/apns.jsonl"

echo "== 7. monalpushctl show status"
monalpushctl/monalpushctl -s "$D/monalpushd.sock" show status

echo "== 8. monalpushctl show registrations -v, show apns"
monalpushctl/monalpushctl -s "$D/monalpushd.sock" -v show registrations
monalpushctl/monalpushctl -s "$D/monalpushd.sock" show apns

echo "== 9. stopping; the log file logd wrote:"
kill -TERM $DPID
wait $DPID || true
DPID=""
cat "$D"/log/monalpush-*.log
