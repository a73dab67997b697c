#!/bin/sh
# Proves regress/s2speer.py against a real XMPP server, Debian's Prosody
# 0.12: the peer (peer.test) opens streams into Prosody (example.test)
# with SASL EXTERNAL and with dialback, with and without bidi, and Prosody
# answers disco#info and ping.  Without bidi, Prosody's replies come over
# its own stream to the peer's listener; with dialback, Prosody verifies
# the peer's key by connecting to that listener (authoritative role), and
# authenticates its own stream to it with EXTERNAL or with dialback (the
# listener then verifies by connecting back: receiving role).
#
# No DNS: Prosody's libunbound gets a private hosts file and a local-data
# SRV record pointing _xmpp-server._tcp.peer.test at the listener's port.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
	skip "s2speer vs prosody: needs root (runs prosody as its user)"
	exit 0
fi
if ! command -v prosody >/dev/null 2>&1 || ! id prosody >/dev/null 2>&1; then
	skip "s2speer vs prosody: prosody is not installed"
	exit 0
fi

PY=/usr/bin/python3
PEER="$TOP/regress/s2speer.py"
P=$T/prosody

stop_prosody() {
	if [ -s "$P/prosody.pid" ]; then
		pp=$(cat "$P/prosody.pid")
		kill -TERM "$pp" 2>/dev/null && wait_gone "$pp" 50
	fi
}
trap 'stop_prosody; cleanup' EXIT

# jcheck FILE STEP EXPR: EXPR, a Python expression over r (a JSON line
# of that step), holds for one of the step's lines.
jcheck() {
	$PY - "$@" <<'EOF'
import json, sys
f, step, expr = sys.argv[1:4]
for line in open(f):
	if not line.startswith("{"):
		continue
	r = json.loads(line)
	if r.get("step") == step and eval("(" + expr + ")"):
		sys.exit(0)
sys.exit(1)
EOF
}

certs "$T" example.test peer.test || { fail "certificates"; finish; }
mkdir -p "$P/data"
cp "$T/example.test.pem" "$T/example.test.key" "$T/ca.pem" "$P/"
chown -R prosody:prosody "$P"

sport=$(free_port)
cport=$(free_port)
lport=$(free_port)
echo "127.0.0.1 peer.test" >"$T/hosts"
cat >"$P/prosody.cfg.lua" <<EOF
pidfile = "$P/prosody.pid"
data_path = "$P/data"
log = { debug = "$P/prosody.log" }
interfaces = { "127.0.0.1" }
s2s_ports = { $sport }
c2s_ports = { $cport }
modules_enabled = { "disco", "ping", "dialback", "tls", "saslauth",
    "s2s_bidi" }
modules_disabled = { "offline" }
s2s_require_encryption = true
s2s_secure_auth = false
ssl = { cafile = "$P/ca.pem" }
unbound = {
	resolvconf = false;
	hoststxt = "$T/hosts";
	options = {
		["local-zone:"] = "test. static";
		["local-data:"] = "_xmpp-server._tcp.peer.test. 60 IN SRV 0 0 $lport peer.test.";
	};
}
VirtualHost "example.test"
	ssl = { certificate = "$P/example.test.pem"; key = "$P/example.test.key" }
EOF
chown prosody:prosody "$P/prosody.cfg.lua"

runuser -u prosody -- prosody --config "$P/prosody.cfg.lua" \
    >"$P/stdout" 2>&1 &
PIDS="$PIDS $!"
if ! wait_for "$P/prosody.log" "Activated service 's2s'" 100; then
	fail "prosody starts"
	cat "$P/stdout" "$P/prosody.log" 2>/dev/null | tail -20
	finish
fi
pass "prosody starts"

# peer NAME [connect options and steps]: one run of the peer into Prosody.
peer() {
	name=$1
	shift
	$PY "$PEER" connect --port "$sport" --from peer.test --to example.test \
	    --cert "$T/peer.test.pem" --key "$T/peer.test.key" \
	    --cafile "$T/ca.pem" --route "example.test=127.0.0.1:$sport" \
	    --timeout 5 "$@" >"$T/$name.out" 2>"$T/$name.err"
}

# answered NAME: disco#info and ping were answered by example.test.
answered() {
	check "$1: disco#info result" jcheck "$T/$1.out" disco-info \
	    'r["type"] == "result" and r["from"] == "example.test"'
	check "$1: disco#info has server identity and ping" \
	    jcheck "$T/$1.out" disco-info \
	    '{"category": "server", "type": "im", "name": "Prosody"} in \
	    r["identities"] and "urn:xmpp:ping" in r["features"]'
	check "$1: ping result" jcheck "$T/$1.out" ping \
	    'r["type"] == "result"'
}

f0=0
begin() { f0=$failed; }
show() { # what happened, when the case failed
	[ "$failed" -eq "$f0" ] || sed 's/^/# /' "$T/$1.out" "$T/$1.err" |
	    tail -20
}

begin
# 1. SASL EXTERNAL and bidi: everything over one stream.
peer ext-bidi --auth external --bidi disco-info ping
check "ext-bidi: EXTERNAL over TLS with bidi" jcheck "$T/ext-bidi.out" \
    connect 'r["ok"] and r["auth"] == "external" and r["bidi"] and
    r["tls"].startswith("TLSv1")'
answered ext-bidi
show ext-bidi

begin
# 2. EXTERNAL without bidi: Prosody replies over its own stream to our
# listener and authenticates that one with EXTERNAL.
peer ext --auth external --listen-port "$lport" --listen-no-bidi \
    disco-info ping incoming
check "ext: EXTERNAL without bidi" jcheck "$T/ext.out" connect \
    'r["ok"] and r["auth"] == "external" and not r["bidi"]'
answered ext
check "ext: prosody's stream to the listener used EXTERNAL" \
    jcheck "$T/ext.out" incoming \
    'r["type"] == "auth" and r["mechanism"] == "external" and
    r["domain"] == "example.test"'
show ext

begin
# 3. Dialback with bidi; the listener offers no EXTERNAL, so Prosody
# also uses dialback towards it and the listener verifies by calling
# Prosody back.
peer db-bidi --auth dialback --bidi --listen-port "$lport" \
    --listen-no-external disco-info ping \
    incoming timeout=1 incoming timeout=1 incoming timeout=1 \
    incoming timeout=1
check "db-bidi: dialback verified by prosody, bidi" \
    jcheck "$T/db-bidi.out" connect \
    'r["ok"] and r["auth"] == "dialback" and r["bidi"]'
answered db-bidi
check "db-bidi: listener answered prosody's db:verify with valid" \
    jcheck "$T/db-bidi.out" incoming \
    'r["type"] == "verify" and r["valid"] and r["receiving"] == "example.test"'
check "db-bidi: listener verified prosody's key by calling it back" \
    jcheck "$T/db-bidi.out" incoming \
    'r["type"] == "auth" and r["mechanism"] == "dialback" and
    r["domain"] == "example.test"'
show db-bidi

begin
# 4. Dialback without bidi: replies come to the listener.
peer db --auth dialback --listen-port "$lport" --listen-no-external \
    --listen-no-bidi disco-info ping
check "db: dialback without bidi" jcheck "$T/db.out" connect \
    'r["ok"] and r["auth"] == "dialback" and not r["bidi"]'
answered db
show db

begin
# 5. A wrong dialback key is refused by Prosody.
peer db-bad --auth dialback --db-key 0123456789abcdef \
    --listen-port "$lport" --listen-no-external
check "db-bad: a wrong dialback key is refused" jcheck "$T/db-bad.out" \
    connect 'not r["ok"] and r["failed"] == "dialback"'
show db-bad

# 6. Raw mode: malformed input gets a stream error from Prosody.
for r in "tcp billion-laughs" "tcp doctype" "header pi" "tls entity" \
    "tls garbage"; do
	set -- $r
	$PY "$PEER" raw --port "$sport" --from peer.test --to example.test \
	    --cert "$T/peer.test.pem" --key "$T/peer.test.key" \
	    --cafile "$T/ca.pem" --stage "$1" --payload "$2" --wait 3 \
	    >"$T/raw-$2.out" 2>&1
	check "raw: $2 at stage $1 gets a stream error" \
	    jcheck "$T/raw-$2.out" raw 'r["stream_error"] is not None'
done

finish
