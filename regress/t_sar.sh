#!/bin/sh
# GDPR subject access (PROTOCOL.md section 6): sar request makes a code,
# a message carrying it from the JID over s2s verifies the JID, and only
# then do sar export (the JID's log lines and the registrations they
# name) and sar erase (those registrations) run.  Wrong, misdirected and
# expired codes verify nothing; no code ever reaches a log.
. "$(dirname "$0")/lib.sh"
need_root "subject access tests"
PEER="/usr/bin/python3 $TOP/regress/s2speer.py"

certs "$T" push.localhost example.test || { fail "test CA"; finish; }
tok() { printf "$1%.0s" $(seq 1 32); }	# 64 hex characters
TOK_U1=$(tok a1)
TOK_U2=$(tok a2)
TOK_O=$(tok b1)
TOK_E=$(tok b2)

conf_base sar >/dev/null	# sets $port
d=$T/sar
peerport=$(free_port)
cat >>"$d/monalpush.conf" <<CONF
ca file "$T/ca.pem"
route "example.test" to 127.0.0.1 port $peerport
CONF
unset MONALPUSHD_TEST_SAR_EXPIRY
start_daemon "$d" || { fail "daemon starts"; finish; }

peer() {
	$PEER connect --host 127.0.0.1 --port "$port" --from example.test \
	    --to push.localhost --cafile "$T/ca.pem" \
	    --cert "$T/example.test.pem" --key "$T/example.test.key" \
	    --auth external --bidi --timeout 10 "$@"
}
ctl() { "$CTL" -s "$d/sock" "$@"; }
# has FILE PATTERN / hasnt FILE PATTERN: fixed strings
has() { grep -qF -- "$2" "$1"; }
hasnt() { ! grep -qF -- "$2" "$1"; }
gdpr=gdpr@push.localhost
U=user@example.test
O=other@example.test

# Two devices of the user, one of another user, and one whose node a
# forged-looking line names.
peer register node=user-dev-1 "token=$TOK_U1" \
    register node=user-dev-2 "token=$TOK_U2" \
    register node=other-dev "token=$TOK_O" from=$O/phone \
    register node=evil-node "token=$TOK_E" from=$O/tablet >"$T/reg.json"
check "four registrations" [ "$(grep -c '"secret"' "$T/reg.json")" -eq 4 ]
secrets=$(sed -n 's/.*"secret": *"\([0-9a-f]*\)".*/\1/p' "$T/reg.json")

# An older file: one line of the user, and lines that only look alike.
yday=$(date -u -d yesterday +%F)
cat >"$d/log/monalpush-$yday.log" <<EOF
${yday}T10:00:00Z event push jid=$U node=user-dev-1
${yday}T10:00:01Z event register jid=$U.evil node=evil-node token=$TOK_E
${yday}T10:00:02Z event register jid=x$U node=evil-node token=$TOK_E
${yday}T10:00:03Z xmppe info: event register jid=$U node=evil-node token=$TOK_E
${yday}T10:00:04Z event push jid=example.test node=evil-node $U
${yday}T10:00:05Z event push jid=example.test node=user-dev-2
${yday}T10:00:06Z event push jid=elsewhere.test node=user-dev-2
EOF

ctl sar export $U >"$T/out" 2>&1
check "export before any request: refused" [ $? -ne 0 ]
check "export before any request: says not verified" has "$T/out" "not verified"
ctl sar erase $U >"$T/out" 2>&1
check "erase before any request: refused" [ $? -ne 0 ]

ctl sar request $U >"$T/req" 2>&1
check "sar request: succeeds" [ $? -eq 0 ]
code=$(sed -n 's/^code: *//p' "$T/req")
check "sar request: prints a code of 16 base32 characters" \
    sh -c "echo '$code' | grep -Eq '^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}\$'"
check "sar request: names the address to write to" has "$T/req" "write to: $gdpr"
check "sar request: names the expiry" grep -Eq '^expires: +[0-9]{4}-' "$T/req"
ctl -j sar request nobody@example.test >"$T/req.json"
check "sar request -j: JSON with code and address" /usr/bin/python3 -c '
import json, re, sys
d = json.load(open(sys.argv[1]))
assert d["to"] == "gdpr@push.localhost" and d["jid"] == "nobody@example.test"
assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", d["code"])
assert d["expires"] > 0 and d["expires_iso"]' "$T/req.json"
code2=$(sed -n 's/.*"code": *"\([^"]*\)".*/\1/p' "$T/req.json")
ctl sar request "$U/res" >"$T/out" 2>&1
check "sar request with a resource: refused" [ $? -ne 0 ]

# The right code to another address, a wrong code from the JID, the
# right code from another JID of the same domain: none verifies (xmppe
# and the parent take them in order; the last two are logged).
peer message to=nobody@push.localhost "body=$code" from=$U/monal \
    message to=$gdpr body=0000-0000-0000-0000 from=$U/monal \
    message to=$gdpr "body=$code" from=$O/phone >/dev/null
wait_for "$d/stderr" "sar: a wrong code from $U"
check "wrong code: logged, naming the JID" [ $? -eq 0 ]
wait_for "$d/stderr" "from a JID without a subject access request"
check "right code from another JID: logged without its JID" [ $? -eq 0 ]
ctl sar export $U >"$T/out" 2>&1
check "export after a wrong code and another sender: refused" [ $? -ne 0 ]
check "the other sender is not named in the log" \
    sh -c "! grep -q 'sar:.*$O' '$d/stderr'"

# The right code from the JID (full JID, typed in lower case without
# dashes) verifies it.
lower=$(echo "$code" | tr -d - | tr A-Z a-z)
peer message to=$gdpr "body=$lower" >/dev/null
wait_for "$d/stderr" "sar: $U verified"
check "right code from the JID: verified" [ $? -eq 0 ]

ctl sar export $U >"$T/exp" 2>&1
check "export after verification: succeeds" [ $? -eq 0 ]
check "export: the register line of device 1" \
    has "$T/exp" "event register jid=$U node=user-dev-1 token=$TOK_U1"
check "export: the register line of device 2" \
    has "$T/exp" "event register jid=$U node=user-dev-2 token=$TOK_U2"
check "export: the older file's line" has "$T/exp" "event push jid=$U node=user-dev-1"
check "export: pushes to the user's node logged under the domain" \
    has "$T/exp" "event push jid=example.test node=user-dev-2"
check "export: not those logged under another domain" \
    hasnt "$T/exp" "jid=elsewhere.test"
check "export: the older file comes first" \
    [ "$(grep -n 'event' "$T/exp" | head -1 | grep -c "$yday")" -eq 1 ]
check "export: record of device 1 with its full token" \
    sh -c "grep -A4 '^node: *user-dev-1' '$T/exp' | grep -q 'token: *$TOK_U1'"
check "export: record of device 2 with its full token" \
    sh -c "grep -A4 '^node: *user-dev-2' '$T/exp' | grep -q 'token: *$TOK_U2'"
check "export: registration timestamps" grep -Eq '^registered: +[0-9]{4}-' "$T/exp"
check "export: exactly two records" [ "$(grep -c '^node:' "$T/exp")" -eq 2 ]
check "export: nothing of the other user" \
    sh -c "! grep -qE '$O|other-dev|evil-node|$TOK_O|$TOK_E|\\.evil|x$U' '$T/exp'"
for s in $secrets; do
	check "export: no secret (${s%${s#????????}}...)" hasnt "$T/exp" "$s"
done

ctl -j sar export $U >"$T/exp.json"
check "export -j: lines as strings, records as objects" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["jid"] == "user@example.test"
assert len(d["lines"]) == 4 and all(isinstance(l, str) for l in d["lines"])
nodes = sorted(r["node"] for r in d["registrations"])
assert nodes == ["user-dev-1", "user-dev-2"], nodes
for r in d["registrations"]:
    assert len(r["token"]) == 64 and r["registered"] > 0
    assert "secret" not in r' "$T/exp.json"

ctl sar erase $U >"$T/erase" 2>&1
check "erase: succeeds" [ $? -eq 0 ]
check "erase: two registrations erased" has "$T/erase" "2 registrations erased"
check "erase: device 1 is gone" sh -c "! '$CTL' -s '$d/sock' show node user-dev-1 >/dev/null 2>&1"
check "erase: device 2 is gone" sh -c "! '$CTL' -s '$d/sock' show node user-dev-2 >/dev/null 2>&1"
check "erase: the other user's device remains" sh -c "'$CTL' -s '$d/sock' show node other-dev >/dev/null"
check "erase: the node of look-alike lines remains" sh -c "'$CTL' -s '$d/sock' show node evil-node >/dev/null"
today=$d/log/monalpush-$(date -u +%F).log
wait_for "$today" "event sar-erase jid=$U\$"
check "erase: sar-erase event logged" [ $? -eq 0 ]
check "erase: the event repeats no data" \
    sh -c "! grep 'sar-erase' '$today' | grep -qE 'node=|token='"
ctl sar export $U >"$T/exp2" 2>&1
check "second export: succeeds" [ $? -eq 0 ]
check "second export: no records" sh -c "! grep -q '^node:' '$T/exp2' && grep -q 'no registrations' '$T/exp2'"
ctl -j sar export $U >"$T/exp2.json"
check "second export -j: empty registrations" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["registrations"] == [] and len(d["lines"]) >= 3' "$T/exp2.json"
ctl -j sar erase $U >"$T/erase.json"
check "second erase -j: nothing erased" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["erased"] == 0 and d["result"] == "ok"' "$T/erase.json"

# Expired codes: the test build takes the expiry from the environment.
kill -TERM "$DPID"; wait "$DPID"
export MONALPUSHD_TEST_SAR_EXPIRY=1
start_daemon "$d" || { fail "daemon restarts"; finish; }
unset MONALPUSHD_TEST_SAR_EXPIRY
ctl sar request $O >"$T/req3" 2>&1
code3=$(sed -n 's/^code: *//p' "$T/req3")
sleep 2
peer message to=$gdpr "body=$code3" from=$O/phone >/dev/null
wait_for "$d/stderr" "sar: an expired code from $O"
check "expired code: logged, not verified" [ $? -eq 0 ]
ctl sar export $O >"$T/out" 2>&1
check "export after an expired code: refused" [ $? -ne 0 ]
kill -TERM "$DPID"; wait "$DPID"

for c in "$code" "$code2" "$code3"; do
	flat=$(echo "$c" | tr -d -)
	check "no code in any log file (${c%${c#????}}...)" \
	    sh -c "! grep -rqaiE '$c|$flat' '$d/log' '$d/stderr'"
done
finish
