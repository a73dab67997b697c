#!/bin/sh
# The whole service under a stream of requests: a reload (an app's
# priority changed, the domain's certificate rotated) drops no stream
# and leaves no IQ unanswered, and the next pushes use the new setting;
# a child killed with SIGKILL takes the daemon down non-zero, and after
# a restart every registration that had been answered is there.
. "$(dirname "$0")/lib.sh"
need_root "load tests"
PEER="/usr/bin/python3 $TOP/regress/s2speer.py"
REGTOOL=$TOP/regress/regtool

certs "$T" push.localhost example.test 127.0.0.1 || { fail "test CA"; finish; }
start_mock || { fail "mock APNs starts"; finish; }

# conf DIR PRIORITY
conf() {
	cat >"$1/monalpush.conf" <<CONF
listen on 127.0.0.1 port $port
domain "push.localhost" {
	certificate "$1/cert.pem"
	key "$1/cert.key"
}
app "monalProdiOS" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	host "127.0.0.1"
	port $MOCKPORT
	certificate "$T/push.localhost.pem" key "$T/push.localhost.key"
	ca "$T/ca.pem"
	priority $2
	rate limit 0
	default
}
ca file "$T/ca.pem"
log directory "$1/log"
database "$1/db"
control socket "$1/sock"
CONF
}
peer() {
	$PEER connect --host 127.0.0.1 --port "$port" --from example.test \
	    --to push.localhost --cafile "$T/ca.pem" \
	    --cert "$T/example.test.pem" --key "$T/example.test.key" \
	    --auth external --bidi --timeout 30 "$@"
}
count() { _n=$(grep -c "$1" "$2" 2>/dev/null); echo "${_n:-0}"; }

# 1. Reload under load.
d=$T/reload
mkdir -p "$d"
port=$(free_port)
cp "$T/push.localhost.pem" "$d/cert.pem"
cp "$T/push.localhost.key" "$d/cert.key"
conf "$d" alert
start_daemon "$d" || { fail "daemon starts"; finish; }
certs "$T/new" push.localhost	# the rotated certificate, made in advance
TOKEN=$(printf 'ab%.0s' $(seq 1 32))
secret=$(peer register node=load-1 "token=$TOKEN" |
    sed -n 's/.*"secret": *"\([0-9a-f]*\)".*/\1/p')
check "registered" [ -n "$secret" ]
N=1000
steps=""
i=0
while [ $i -lt $N ]; do
	steps="$steps publish node=load-1 secret=$secret"
	i=$((i + 1))
done
# A second stream pipelines $N publishes while the reload happens.
peer $steps >"$T/load.json" 2>&1 &
LPID=$!
PIDS="$PIDS $LPID"
n=0
while [ "$(count '"step": "publish"' "$T/load.json")" -lt 50 ] && [ $n -lt 100 ]; do
	sleep 0.1; n=$((n + 1))
done
# Rotate the certificate and change the priority, then reload.
cp "$T/new/push.localhost.pem" "$d/cert.pem"
cp "$T/new/push.localhost.key" "$d/cert.key"
chmod 0600 "$d/cert.key"
conf "$d" background
before=$(count '"step": "publish"' "$T/load.json")
kill -HUP "$DPID"
wait_for "$d/stderr" "configuration reloaded" || fail "reload applied"
wait "$LPID"
answered=$(count '"step": "publish"' "$T/load.json")
ok=$(count '"type": "result"' "$T/load.json")
check "reload came in the middle ($before of $N answered before it)" \
    [ "$before" -lt "$N" ]
check "every IQ answered exactly once ($answered of $N)" [ "$answered" -eq "$N" ]
check "every IQ answered with result ($ok)" [ "$ok" -eq "$N" ]
check "no stream dropped: one connection carried them all" \
    [ "$(count '"step": "connect"' "$T/load.json")" -eq 1 ]
peer publish node=load-1 "secret=$secret" >/dev/null
check "the next push uses the new priority (background)" \
    sh -c "tail -1 '$T/record.jsonl' | grep -q '\"apns-push-type\":\"background\"'"
# A new stream sees the rotated certificate.
serial_new=$(openssl x509 -in "$T/new/push.localhost.pem" -noout -serial | cut -d= -f2)
serial_seen=$(echo | openssl s_client -connect 127.0.0.1:$port -starttls xmpp-server \
    -xmpphost push.localhost -servername push.localhost 2>/dev/null |
    openssl x509 -noout -serial 2>/dev/null | cut -d= -f2)
check "a new stream gets the rotated certificate" [ "$serial_seen" = "$serial_new" ]
kill -TERM "$DPID"; wait "$DPID"

# 2. A child killed under load: nothing answered is lost.
for victim in xmppe apnse logd; do
	d=$T/kill-$victim
	mkdir -p "$d"
	port=$(free_port)
	cp "$T/push.localhost.pem" "$d/cert.pem"
	cp "$T/push.localhost.key" "$d/cert.key"
	conf "$d" auto
	start_daemon "$d" || { fail "$victim: daemon starts"; continue; }
	steps=""
	i=0
	while [ $i -lt 400 ]; do
		steps="$steps register node=$victim-$i token=$(printf '%064x' $i)"
		i=$((i + 1))
	done
	peer $steps >"$T/regs-$victim.json" 2>&1 &
	RPID=$!
	n=0
	while [ "$(count '"secret"' "$T/regs-$victim.json")" -lt 50 ] && [ $n -lt 100 ]; do
		sleep 0.1; n=$((n + 1))
	done
	kill -KILL "$(child_pid "$DPID" "$victim")"
	wait_gone "$DPID" 20 || kill -KILL "$DPID"
	wait "$DPID"
	rc=$?
	wait "$RPID"
	check "$victim killed under load: exit non-zero ($rc)" [ "$rc" -ne 0 ]
	# Every node whose registration was answered is in the store.
	acked=$(sed -n 's/.*"node": *"\([^"]*\)".*"secret": *"[0-9a-f]*".*/\1/p;
	    s/.*"secret": *"[0-9a-f]*".*"node": *"\([^"]*\)".*/\1/p' \
	    "$T/regs-$victim.json" | sort -u)
	nacked=$(echo "$acked" | grep -c .)
	missing=0
	for node in $acked; do
		"$REGTOOL" "$d/db" get "$node" >/dev/null 2>&1 ||
		    missing=$((missing + 1))
	done
	check "$victim killed: all $nacked answered registrations present after restart ($missing missing)" \
	    [ "$nacked" -gt 0 -a "$missing" -eq 0 ]
	start_daemon "$d" || fail "$victim: daemon restarts on the same store"
	out=$("$CTL" -s "$d/sock" show registrations 2>&1)
	echo "$out" | sed 's/^/# /'
	check "$victim: the restarted daemon serves its registrations" \
	    sh -c "echo \"\$1\" | grep -Eq 'monalProdiOS +[1-9]'" x "$out"
	kill -TERM "$DPID"; wait "$DPID"
done
finish
