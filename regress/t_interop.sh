#!/bin/sh
# Interoperability (issues 4 and 6): Debian's Prosody 0.12 with
# prosody-modules' mod_cloud_notify as the user's server, a slixmpp client
# doing what Monal does (regress/monal_client.py), monalpushd as push.test
# and regress/mock_apns as APNs.  Everything runs in a network namespace of
# its own, with a dnsmasq that serves the A and SRV records of both
# domains, so that Prosody and monalpushd find each other through DNS:
#
#	10.77.0.1	example.test	Prosody, c2s 5222, s2s 5269
#	10.77.0.2	push.test	monalpushd, s2s 5269
#	10.77.0.53	dnsmasq
#	127.0.0.1	mock APNs
#
# Three runs: "cert" (both sides trust the test CA; SASL EXTERNAL,
# s2s_secure_auth true), "serverauth" (the same with a Prosody
# certificate that has only the serverAuth EKU, as Let's Encrypt issues
# them since 2026) and "dialback" (Prosody's certificate comes from a CA
# monalpushd does not trust, Prosody does not trust ours, s2s_secure_auth
# false and no bidi, so both directions must use dialback).  Each run
# registers one device in registered mode and one in token mode, then a
# third account sends both users a message while they are offline, and
# APNs must see both pushes.  INTEROP_KEEP=DIR keeps the logs.
. "$(dirname "$0")/lib.sh"
need_root "interop"

PY=/usr/bin/python3
CLIENT=$TOP/regress/monal_client.py
DAEMON=${INTEROP_DAEMON:-$DAEMON}
MOCK=$TOP/regress/mock_apns
TEMPLATE=$TOP/regress/interop/prosody.cfg.lua.in
PLUGINS=/usr/lib/prosody/modules	# prosody-modules' mod_cloud_notify/
PROSODY_IP=10.77.0.1
PUSH_IP=10.77.0.2
DNS_IP=10.77.0.53
PW=interop-$$
APP=monalProdiOS
TOKAPP=monalTokeniOS

for c in ip dnsmasq prosody prosodyctl setpriv ss; do
	if ! command -v $c >/dev/null 2>&1; then
		skip "interop: no $c (scripts/setup.sh installs it)"
		exit 0
	fi
done
if ! $PY -c 'import slixmpp' 2>/dev/null; then
	skip "interop: no python3-slixmpp"
	exit 0
fi
if [ ! -f $PLUGINS/mod_cloud_notify/mod_cloud_notify.lua ] ||
    ! id prosody >/dev/null 2>&1; then
	skip "interop: no prosody-modules' mod_cloud_notify or prosody user"
	exit 0
fi
if [ ! -x "$MOCK" ] || [ ! -x "$DAEMON" ]; then
	skip "interop: build regress/mock_apns and regress/monalpushd-test"
	exit 0
fi

NS=mp-$$-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
ns() { ip netns exec "$NS" "$@"; }

# Every process of the namespace is one this test started.
interop_cleanup() {
	for p in $PIDS $(ip netns pids "$NS" 2>/dev/null); do
		kill -TERM "$p" 2>/dev/null
	done
	n=50
	while [ -n "$(ip netns pids "$NS" 2>/dev/null)" ] && [ $n -gt 0 ]; do
		sleep 0.1
		n=$((n - 1))
	done
	for p in $(ip netns pids "$NS" 2>/dev/null); do
		kill -KILL "$p" 2>/dev/null
	done
	ip netns del "$NS" 2>/dev/null
	rm -rf "/etc/netns/$NS"
	[ -n "${INTEROP_KEEP:-}" ] && cp -a "$T" "$INTEROP_KEEP"
	cleanup
}
trap interop_cleanup EXIT

# bg NAME CMD...: start CMD in the namespace, output to $T/NAME.out.
bg() {
	_bg_name=$1
	shift
	# ip execs the command: $! is its process id.
	ip netns exec "$NS" "$@" >"$T/$_bg_name.out" 2>&1 &
	BGPID=$!
	PIDS="$PIDS $BGPID"
}

# stop PID: TERM, then wait at most 5 s.
stop() {
	kill -TERM "$1" 2>/dev/null
	wait_gone "$1" 50 || kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# wait_port ADDR PORT: a listening TCP socket in the namespace, 10 s.
wait_port() {
	n=100
	while [ $n -gt 0 ]; do
		ns ss -Hltn "sport = :$2" 2>/dev/null | grep -q "$1:$2" &&
		    return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

# show FILE [N]: the last lines of a log after a failure, indented.
show() {
	echo "# --- $1"
	tail -n "${2:-15}" "$1" 2>/dev/null | sed 's/^/#   /'
}

# wait_cmd TENTHS CMD...: poll until CMD succeeds.
wait_cmd() {
	n=$1
	shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

# publish_result LOG: Prosody's debug log shows an IQ result from
# push.test to example.test itself (the publish; the register result
# goes to the user's full JID).
publish_result() {
	grep "Received\[s2s" "$1" | grep "<iq " | grep "from='push.test'" |
	    grep "to='example.test'" | grep -q "type='result'"
}

hex64() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# The namespace, its addresses and its DNS.
if ! ip netns add "$NS" 2>"$T/netns.err"; then
	skip "interop: no network namespace: $(cat "$T/netns.err")"
	exit 0
fi
mkdir -p "/etc/netns/$NS"
echo "nameserver $DNS_IP" >"/etc/netns/$NS/resolv.conf"
ns ip link set lo up
for a in $PROSODY_IP $PUSH_IP $DNS_IP; do
	ns ip addr add $a/32 dev lo
done
bg dnsmasq dnsmasq --no-daemon --conf-file=/dev/null --no-resolv \
    --no-hosts --bind-interfaces --listen-address=$DNS_IP --pid-file= \
    --user=root --local=/test/ --log-queries --log-facility=- \
    --host-record=example.test,$PROSODY_IP --host-record=push.test,$PUSH_IP \
    --srv-host=_xmpp-server._tcp.example.test,example.test,5269 \
    --srv-host=_xmpp-server._tcp.push.test,push.test,5269
if wait_port $DNS_IP 53 && ns getent hosts push.test | grep -q "^$PUSH_IP"
then
	pass "namespace $NS with its DNS: push.test is $PUSH_IP"
else
	fail "namespace DNS"
	show "$T/dnsmasq.out"
	finish
fi

# Certificates: the test CA for everything, and a second CA whose
# example.test certificate monalpushd does not trust.
certs "$T/ca" example.test push.test 127.0.0.1 apnsclient
certs "$T/ca2" example.test
# Let's Encrypt's certificates since 2026: serverAuth only.
certs -s "$T/ca3" example.test
chmod 0755 "$T/ca" "$T/ca2" "$T/ca3"
cat "$T/ca/ca.pem" "$T/ca3/ca.pem" >"$T/cas.pem"

# mock APNs, shared by all runs; it checks the client certificate.
bg mock "$MOCK" -p 0 -c "$T/ca/127.0.0.1.pem" -k "$T/ca/127.0.0.1.key" \
    -C "$T/ca/ca.pem" -r "$T/apns.jsonl"
if wait_for "$T/mock.out" "^listening on 127.0.0.1 port "; then
	mport=$(sed -n 's/^listening on 127.0.0.1 port //p' "$T/mock.out")
else
	fail "mock APNs starts"
	finish
fi

# run NAME SECURE CERTDIR CAFILE: one Prosody with CERTDIR's example.test
# certificate and CAFILE as its trust, one monalpushd, three accounts.
run() {
	r=$1
	secure=$2
	pca=$3
	cafile=$4
	R=$T/$r
	P=$R/prosody
	failed0=$failed
	dns0=$(($(wc -l <"$T/dnsmasq.out") + 1))
	mkdir -p "$P/data" "$R/mp"
	cp "$pca/example.test.pem" "$pca/example.test.key" "$P/"
	# XEP-0288 only in the first run: without it monalpushd must open
	# its own stream to example.test for its replies.
	bidi=
	[ "$r" = cert ] && bidi='"s2s_bidi";'
	sed -e "s|@DIR@|$P|g" -e "s|@PLUGINS@|$PLUGINS|g" \
	    -e "s|@SECURE@|$secure|g" -e "s|@CERT@|$P/example.test.pem|g" \
	    -e "s|@KEY@|$P/example.test.key|g" -e "s|@CAFILE@|$cafile|g" \
	    -e "s|@BIDI@|$bidi|g" "$TEMPLATE" >"$P/prosody.cfg.lua"
	chown -R prosody:prosody "$P"
	for u in user tok sender; do
		prosodyctl --config "$P/prosody.cfg.lua" register $u \
		    example.test "$PW" >"$R/prosodyctl.out" 2>&1 ||
		    { fail "$r: prosodyctl register $u"; show "$R/prosodyctl.out"; return; }
	done

	# Started as root Prosody refuses to run; -F keeps it in the
	# foreground so that the pid is the one to stop.
	bg $r.prosody setpriv --reuid=prosody --regid=prosody --init-groups \
	    prosody -F --config "$P/prosody.cfg.lua"
	ppid=$BGPID
	if wait_port $PROSODY_IP 5222 && wait_port $PROSODY_IP 5269; then
		pass "$r: prosody listens on c2s and s2s"
	else
		fail "$r: prosody starts"
		show "$T/$r.prosody.out"
		show "$P/prosody.log"
		return
	fi
	check "$r: prosody loaded mod_cloud_notify" \
	    wait_for "$P/prosody.log" "example.test:cloud_notify.*Module loaded"

	cat >"$R/mp/monalpush.conf" <<CONF
listen on $PUSH_IP port 5269
domain "push.test" {
	certificate "$T/ca/push.test.pem"
	key "$T/ca/push.test.key"
}
ca file "$T/cas.pem"
handshake timeout 10
# libunbound answers NXDOMAIN for test. unless told (RFC 6761).
dns transparent zone "test"
app "$APP" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	host "127.0.0.1"
	port $mport
	certificate "$T/ca/apnsclient.pem" key "$T/ca/apnsclient.key"
	ca "$T/ca/ca.pem"
	rate limit 0
	default
}
app "$TOKAPP" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	host "127.0.0.1"
	port $mport
	certificate "$T/ca/apnsclient.pem" key "$T/ca/apnsclient.key"
	ca "$T/ca/ca.pem"
	rate limit 0
	mode token
}
log directory "$R/mp/log"
database "$R/mp/db"
control socket "$R/mp/sock"
CONF
	bg $r.monalpushd "$DAEMON" -d -f "$R/mp/monalpush.conf"
	mpid=$BGPID
	if wait_for "$T/$r.monalpushd.out" "startup:" &&
	    wait_port $PUSH_IP 5269; then
		pass "$r: monalpushd listens on $PUSH_IP port 5269"
	else
		fail "$r: monalpushd starts"
		show "$T/$r.monalpushd.out"
		stop $ppid
		return
	fi

	client() { # client ACCOUNT ARGS...
		_c_who=$1
		shift
		ns $PY "$CLIENT" --server $PROSODY_IP --port 5222 \
		    --ca "$pca/ca.pem" --jid "$_c_who@example.test" \
		    --password "$PW" --timeout 6 "$@" 2>>"$R/client.err"
	}

	# Registered mode: v1-register-push, then <enable/> with the secret.
	node=$(cat /proc/sys/kernel/random/uuid)
	token=$(hex64)
	client user register push.test "$token" "$node" >"$R/register.out"
	sed 's/^/# user: /' "$R/register.out"
	check "$r: register reply is status=complete with our node" \
	    grep -q "^registered status=complete node=$node jid=push.test" \
	    "$R/register.out"
	check "$r: register reply has a secret" \
	    grep -Eq "^secret [1-9][0-9]* chars" "$R/register.out"
	check "$r: prosody accepted <enable/> with node and secret" \
	    grep -q "^enabled jid=push.test" "$R/register.out"
	check "$r: prosody resolved push.test through DNS (SRV)" grep -q \
	    "Results for _xmpp-server._tcp.push.test IN SRV: 1 items" \
	    "$P/prosody.log"
	check "$r: prosody's stream to push.test authenticated" grep -q \
	    "Outgoing s2s connection example.test->push.test complete" \
	    "$P/prosody.log"
	if [ "$secure" = true ]; then
		how=external
		check "$r: ... with SASL EXTERNAL" grep -q \
		    "SASL EXTERNAL with push.test succeeded" "$P/prosody.log"
	else
		how=dialback
		check "$r: ... with dialback" grep -q \
		    "verified dialback key... it is valid" "$P/prosody.log"
	fi
	check "$r: monalpushd says example.test authenticated by $how" grep -q \
	    "s2s in .*: example.test authenticated for push.test ($how" \
	    "$T/$r.monalpushd.out"
	check "$r: monalpushd logged the register event" sh -c \
	    "cat '$R/mp/log'/* 2>/dev/null | grep -q 'event register jid=user@example.test[^ ]* node=$node token=$token'"

	# Token mode: <enable/> with node = token, pushModule = the app.
	ttoken=$(hex64)
	client tok token push.test "$ttoken" "$TOKAPP" >"$R/token.out"
	sed 's/^/# tok: /' "$R/token.out"
	check "$r: token mode <enable/> accepted" \
	    grep -q "^enabled jid=push.test" "$R/token.out"

	# Both are offline now: a message to each makes mod_cloud_notify
	# publish to push.test.
	client sender send user@example.test "hello user" >"$R/send1.out"
	client sender send tok@example.test "hello tok" >"$R/send2.out"
	check "$r: messages sent while the users are offline" \
	    grep -q "^sent" "$R/send1.out" "$R/send2.out"

	if grep -q "^enabled" "$R/register.out"; then
		check "$r: APNs got POST /3/device/<registered token>" \
		    wait_for "$T/apns.jsonl" "\"path\":\"/3/device/$token\"" 100
	else
		fail "$r: APNs got POST /3/device/<registered token>: not registered"
	fi
	check "$r: APNs got POST /3/device/<token-mode token>" \
	    wait_for "$T/apns.jsonl" "\"path\":\"/3/device/$ttoken\"" 50
	check "$r: APNs answered 200 to alert pushes for both" sh -c \
	    "[ \$(grep -E '/3/device/($token|$ttoken)\"' '$T/apns.jsonl' |
	    grep '\"apns-push-type\":\"alert\"' | grep -c '\"status\":200') -eq 2 ]"
	check "$r: prosody got a result for its publish" \
	    wait_cmd 30 publish_result "$P/prosody.log"
	if grep -q 'Got error\|Disabling push' "$P/prosody.log"; then
		fail "$r: mod_cloud_notify saw a push error"
		grep 'Got error\|Disabling push' "$P/prosody.log" | sed 's/^/#   /'
	fi
	if [ -n "$bidi" ]; then
		check "$r: monalpushd answered over the bidi stream only" sh -c \
		    "! grep -q 's2s out' '$T/$r.monalpushd.out'"
	else
		check "$r: monalpushd's own stream to example.test authenticated" \
		    grep -q "s2s out push.test -> example.test: .* authenticated" \
		    "$T/$r.monalpushd.out"
	fi
	if [ -z "$bidi" ]; then
		# Nobody but monalpushd looks example.test up.
		check "$r: monalpushd resolved example.test through DNS" sh -c \
		    "tail -n +$dns0 '$T/dnsmasq.out' | grep -q 'query\[[A-Z]*\] [^ ]*example.test from'"
	fi
	[ "$failed" -gt "$failed0" ] && {
		show "$T/$r.monalpushd.out" 40
		grep -i 's2s\|push' "$P/prosody.log" | tail -n 30 >"$R/ps2s"
		show "$R/ps2s" 30
		show "$R/client.err" 10
	}
	stop $mpid
	stop $ppid
}

run cert true "$T/ca" "$T/ca/ca.pem"
run serverauth true "$T/ca3" "$T/ca/ca.pem"
run dialback false "$T/ca2" "$T/ca2/ca.pem"
finish
