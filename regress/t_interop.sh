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
# APNs must see both pushes.  Then the rest of issue 6, in every run:
# APNs says the registered token is dead (410, timestamp after the
# registration), so monalpushd deletes the registration, answers
# cancel/item-not-found and mod_cloud_notify disables push for the node;
# the app registers again and pushes flow again; the app unregisters;
# and a GDPR subject access request is verified by a message from the
# user through Prosody, exported and erased.  INTEROP_KEEP=DIR keeps
# the logs.
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

# publish_result LOG [N]: Prosody's debug log shows more than N IQ
# results from push.test to example.test itself (the publishes; the
# register result goes to the user's full JID).
publish_result() {
	[ "$(grep "Received\[s2s" "$1" | grep "<iq " |
	    grep "from='push.test'" | grep "to='example.test'" |
	    grep -c "type='result'")" -gt "${2:-0}" ]
}

# count PATTERN FILE...: matching lines (0 when there is no file).
count() {
	_n=$(cat "$@" 2>/dev/null | grep -c -- "$1")
	echo "${_n:-0}"
}

# more PATTERN N FILE...: more than N matching lines.
more() {
	_m_pat=$1
	_m_n=$2
	shift 2
	[ "$(cat "$@" 2>/dev/null | grep -c -- "$_m_pat")" -gt "$_m_n" ]
}

# mock_script LINE: add a rule to the mock's script and reload it.
mock_script() {
	_ms_n=$(count "^script reloaded" "$T/mock.out")
	echo "$1" >>"$T/apns.script"
	kill -HUP "$mockpid"
	wait_cmd 50 more "^script reloaded" "$_ms_n" "$T/mock.out"
}

# unchanged TENTHS FILE...: none of FILEs grows for TENTHS/10 seconds.
unchanged() {
	_u_n=$1
	shift
	_u_size=$(cat "$@" 2>/dev/null | wc -c)
	while [ "$_u_n" -gt 0 ]; do
		[ "$(cat "$@" 2>/dev/null | wc -c)" -eq "$_u_size" ] || return 1
		sleep 0.1
		_u_n=$((_u_n - 1))
	done
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
: >"$T/apns.script"
bg mock "$MOCK" -p 0 -c "$T/ca/127.0.0.1.pem" -k "$T/ca/127.0.0.1.key" \
    -C "$T/ca/ca.pem" -r "$T/apns.jsonl" -s "$T/apns.script"
mockpid=$BGPID
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

	ctl() { "$CTL" -s "$R/mp/sock" "$@"; }
	nonode() { ! ctl show node "$1" >/dev/null 2>&1; }
	# stat NAME: one counter of show stats -j.
	stat() {
		ctl -j show stats | tr ',{}' '\n\n\n' |
		    sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*//p"
	}

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
	check "$r: show node finds the registration with its token" sh -c \
	    "'$CTL' -v -s '$R/mp/sock' show node '$node' | grep -q '^token: *$token\$'"

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
	dead_token
	reregister
	unregister
	subject_access
	[ "$failed" -gt "$failed0" ] && {
		show "$T/$r.monalpushd.out" 40
		grep -i 's2s\|push' "$P/prosody.log" | tail -n 30 >"$R/ps2s"
		show "$R/ps2s" 30
		show "$R/client.err" 10
	}
	stop $mpid
	stop $ppid
}

# The steps below run inside run(), after the first pushes, with its
# variables and functions: r, R, P, node, token, ttoken, client, ctl,
# nonode, stat.

# 1. Apple says the registered token is dead (410 with a timestamp after
# the registration): monalpushd deletes the registration and answers
# cancel/item-not-found, mod_cloud_notify (push_max_errors 1, as ejabberd
# does on the first error that is not "wait") disables push for the
# node, and the next message publishes nothing.
dead_token() {
	mock_script "$token 410 Unregistered $(($(date +%s) * 1000 + 60000))"
	check "$r: mock APNs reloaded its script (410 for the token)" [ $? -eq 0 ]
	n410=$(count "/3/device/$token\".*\"status\":410" "$T/apns.jsonl")
	client sender send user@example.test "dead token" >"$R/send3.out"
	check "$r: APNs answered 410 Unregistered for the registered token" \
	    wait_cmd 100 more "/3/device/$token\".*\"status\":410" $n410 \
	    "$T/apns.jsonl"
	check "$r: monalpushd deleted the registration (show node fails)" \
	    wait_cmd 50 nonode "$node"
	check "$r: monalpushd logged token-dead for the node" wait_cmd 50 \
	    more "event token-dead node=$node token=$token status=410" 0 \
	    "$R/mp/log"/*
	check "$r: prosody got cancel/item-not-found for its publish" \
	    wait_for "$P/prosody.log" \
	    "Got error <cancel:item-not-found:[^>]*> for identifier 'push.test<$node'" 50
	check "$r: mod_cloud_notify disabled push for the node" \
	    wait_for "$P/prosody.log" \
	    "Disabling push notifications for identifier 'push.test<$node'" 50
	check "$r: show stats counts one dead token, one deleted registration" \
	    [ "$(stat dead_token)/$(stat deleted)" = 1/1 ]

	# Another message: Prosody stores it and finds no push service.
	pl=$(wc -l <"$P/prosody.log")
	inv=$(count "handle_notify_request() for offline stanza" "$P/prosody.log")
	na=$(wc -l <"$T/apns.jsonl")
	nm=$(wc -l <"$T/$r.monalpushd.out")
	np=$(stat publishes)
	client sender send user@example.test "after disable" >"$R/send4.out"
	check "$r: prosody handled the next offline message" wait_cmd 50 \
	    more "handle_notify_request() for offline stanza" "$inv" \
	    "$P/prosody.log"
	check "$r: mock APNs record and monalpushd's log unchanged for 1 s" \
	    unchanged 10 "$T/apns.jsonl" "$T/$r.monalpushd.out"
	check "$r: ... prosody sent no push for it" sh -c "! tail -n +$((pl + 1)) \
	    '$P/prosody.log' | grep -q 'Sending .* push notification for user@'"
	check "$r: ... nothing new in either since the message" sh -c \
	    "[ \$(wc -l <'$T/apns.jsonl') -eq $na ] &&
	    [ \$(wc -l <'$T/$r.monalpushd.out') -eq $nm ]"
	check "$r: ... and monalpushd received no publish ($np before)" \
	    [ "${np:-none}" = "$(stat publishes)" ]
}

# 2. The app registers the same node again with a new token (a new
# registration: the old one is gone) and enables push again.
reregister() {
	token2=$(hex64)
	nres=$(grep "Received\[s2s" "$P/prosody.log" | grep "<iq " |
	    grep "from='push.test'" | grep "to='example.test'" |
	    grep -c "type='result'")
	client user register push.test "$token2" "$node" >"$R/register2.out"
	sed 's/^/# user: /' "$R/register2.out"
	check "$r: registered again: status=complete, same node" \
	    grep -q "^registered status=complete node=$node jid=push.test" \
	    "$R/register2.out"
	check "$r: ... and push enabled again at prosody" \
	    grep -q "^enabled jid=push.test" "$R/register2.out"
	check "$r: show node has the new token" sh -c \
	    "'$CTL' -v -s '$R/mp/sock' show node '$node' | grep -q '^token: *$token2\$'"
	client sender send user@example.test "hello again" >"$R/send5.out"
	check "$r: APNs got POST /3/device/<new token>, answered 200" \
	    wait_for "$T/apns.jsonl" \
	    "\"path\":\"/3/device/$token2\".*\"status\":200" 100
	check "$r: prosody got a result for the new publish" \
	    wait_cmd 30 publish_result "$P/prosody.log" "$nres"
}

# 3. The app unregisters through its server: v1-unregister-push, then
# <disable/>.
unregister() {
	client user unregister push.test "$node" >"$R/unregister.out"
	sed 's/^/# user: /' "$R/unregister.out"
	check "$r: unregister reply is a result with jid and node" \
	    grep -q "^unregistered status=complete node=$node jid=push.test" \
	    "$R/unregister.out"
	check "$r: ... and prosody disabled push" \
	    grep -q "^disabled jid=push.test node=$node" "$R/unregister.out"
	check "$r: show node fails after unregistration" nonode "$node"
	check "$r: monalpushd logged the unregister event" wait_cmd 30 \
	    more "event unregister jid=user@example.test[^ ]* node=$node token=$token2" \
	    0 "$R/mp/log"/*
}

# 4. GDPR subject access: a new device of the user, then sar request,
# the code sent from user@example.test through Prosody over s2s, sar
# export and sar erase.
subject_access() {
	node3=$(cat /proc/sys/kernel/random/uuid)
	token3=$(hex64)
	client user register push.test "$token3" "$node3" >"$R/register3.out"
	check "$r: a new device registered and enabled" \
	    grep -q "^enabled jid=push.test" "$R/register3.out"
	ctl sar export user@example.test >"$R/sar.noreq" 2>&1
	check "$r: sar export before any request is refused" [ $? -ne 0 ]
	ctl sar request user@example.test >"$R/sar.req" 2>&1
	check "$r: sar request succeeds" [ $? -eq 0 ]
	grep '^write to:' "$R/sar.req" | sed 's/^/# sar: /'
	check "$r: sar request names gdpr@push.test" \
	    grep -q "^write to: *gdpr@push.test\$" "$R/sar.req"
	code=$(sed -n 's/^code: *//p' "$R/sar.req")
	check "$r: sar request prints a code" [ -n "$code" ]
	client user send gdpr@push.test "$code" >"$R/send6.out"
	check "$r: the code sent from user@example.test through prosody" \
	    grep -q "^sent to=gdpr@push.test" "$R/send6.out"
	check "$r: monalpushd verified user@example.test" \
	    wait_for "$T/$r.monalpushd.out" "sar: user@example.test verified" 50
	ctl sar export user@example.test >"$R/sar.export" 2>&1
	check "$r: sar export succeeds" [ $? -eq 0 ]
	U='jid=user@example.test[^ ]*'
	for l in "register $U node=$node token=$token" \
	    "register $U node=$node token=$token2" \
	    "unregister $U node=$node token=$token2" \
	    "register $U node=$node3 token=$token3"; do
		check "$r: export has 'event ${l%% *} ...${l##*=}'" \
		    grep -q "event $l\$" "$R/sar.export"
	done
	check "$r: export has the record of the new device with its token" \
	    sh -c "grep -A4 '^node: *$node3\$' '$R/sar.export' |
	    grep -q '^token: *$token3\$'"
	check "$r: export has exactly that one record" \
	    [ "$(grep -c '^node:' "$R/sar.export")" -eq 1 ]
	check "$r: export names nothing of the token-mode user" sh -c \
	    "! grep -qE 'tok@example.test|$ttoken' '$R/sar.export'"
	ctl sar erase user@example.test >"$R/sar.erase" 2>&1
	check "$r: sar erase succeeds" [ $? -eq 0 ]
	sed 's/^/# sar: /' "$R/sar.erase"
	check "$r: sar erase erased one registration" \
	    grep -q "^user@example.test: 1 registration erased" "$R/sar.erase"
	check "$r: show node fails for the erased device" nonode "$node3"
	check "$r: no code in monalpushd's logs" sh -c \
	    "! grep -rqaF '$code' '$R/mp/log' '$T/$r.monalpushd.out'"
}

run cert true "$T/ca" "$T/ca/ca.pem"
run serverauth true "$T/ca3" "$T/ca/ca.pem"
run dialback false "$T/ca2" "$T/ca2/ca.pem"
finish
