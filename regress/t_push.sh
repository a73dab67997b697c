#!/bin/sh
# The whole push path on loopback: a scripted user's server (s2speer.py)
# registers a device over s2s, publishes, and the request reaches the
# mock APNs with Apple's headers; each APNs outcome maps to the reply and
# the store as PROTOCOL.md section 5 says; the rate limit coalesces;
# and nothing beyond the policy's fields reaches the logs or the store.
. "$(dirname "$0")/lib.sh"
need_root "push path tests"
PEER="/usr/bin/python3 $TOP/regress/s2speer.py"
REGTOOL=$TOP/regress/regtool

certs "$T" push.localhost example.test other.test 127.0.0.1 || { fail "test CA"; finish; }
tok() { printf "$1%.0s" $(seq 1 32); }	# 64 hex characters
TOK_OK=$(tok a1)
TOK_DEAD=$(tok d2)
TOK_OLD=$(tok e3)
TOK_RATE=$(tok f4)
TOK_OP=$(tok b5)
TOK_WAIT=$(tok c6)
TOK_GONE=$(tok 9a)
FUTURE=$(( ($(date +%s) + 3600) * 1000 ))
cat >"$T/script" <<EOF
$TOK_DEAD 410 $FUTURE
$TOK_OLD 410 1000
$TOK_OP 403 BadCertificate
$TOK_WAIT 500
$TOK_GONE 410
* 200
EOF
start_mock "$T/script" || { fail "mock APNs starts"; finish; }

conf_mock push
d=$T/push
peerport=$(free_port)
cat >>"$d/monalpush.conf" <<CONF
app "monalRate" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	host "127.0.0.1"
	port $MOCKPORT
	certificate "$T/push.localhost.pem" key "$T/push.localhost.key"
	ca "$T/ca.pem"
	rate limit 2
	mode token
}
apns timeout 2
route "example.test" to 127.0.0.1 port $peerport
CONF
start_daemon "$d" || { fail "daemon starts"; finish; }

peer() {
	$PEER connect --host 127.0.0.1 --port "$port" --from example.test \
	    --to push.localhost --cafile "$T/ca.pem" \
	    --cert "$T/example.test.pem" --key "$T/example.test.key" \
	    --auth external --bidi --timeout 10 "$@"
}
# field JSONFILE STEP KEY: a field of the first line of a step.
field() {
	/usr/bin/python3 -c 'import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("step") == sys.argv[2]:
        print(d.get(sys.argv[3], "")); break' "$@"
}

peer register node=dev-ok "token=$TOK_OK" >"$T/reg.json"
secret=$(field "$T/reg.json" register secret)
check "register: result with a 64-hex secret" \
    sh -c "echo '$secret' | grep -Eq '^[0-9a-f]{64}$'"
check "register: status complete" \
    [ "$(field "$T/reg.json" register status)" = complete ]

BODY="unique-body-$$-$(date +%s)"
SENDER="romeo-$$@montague.example"
peer publish node=dev-ok "secret=$secret" "body=$BODY" "sender=$SENDER" \
    >"$T/pub.json"
check "publish: result" [ "$(field "$T/pub.json" publish type)" = result ]
check "the mock received POST /3/device/TOKEN" \
    grep -q "\"path\":\"/3/device/$TOK_OK\"" "$T/record.jsonl"
check "alert push: apns-push-type alert, priority 10" \
    sh -c "grep '$TOK_OK' '$T/record.jsonl' | grep -q '\"apns-push-type\":\"alert\"' &&
    grep '$TOK_OK' '$T/record.jsonl' | grep -q '\"apns-priority\":\"10\"'"
check "topic sent" grep -q '"apns-topic":"G7YU7X7KRJ.SworIM"' "$T/record.jsonl"
check "mutable-content is the number 1" grep -q 'mutable-content\\":1' "$T/record.jsonl"
check "the body never reaches Apple" sh -c "! grep -q '$BODY' '$T/record.jsonl'"
check "the sender never reaches Apple" sh -c "! grep -q '$SENDER' '$T/record.jsonl'"
peer publish node=dev-ok "secret=$secret" >"$T/pub.json"
check "background push: push type background, priority 5" \
    sh -c "grep '$TOK_OK' '$T/record.jsonl' | tail -1 | grep -q '\"apns-push-type\":\"background\"' &&
    grep '$TOK_OK' '$T/record.jsonl' | tail -1 | grep -q '\"apns-priority\":\"5\"'"

peer publish node=dev-ok "secret=$(tok 00)" >"$T/bad.json"
check "wrong secret: cancel/item-not-found" \
    [ "$(field "$T/bad.json" publish condition)" = item-not-found ]
peer publish node=no-such-node "secret=$secret" >"$T/bad.json"
check "unknown node: cancel/item-not-found" \
    [ "$(field "$T/bad.json" publish condition)" = item-not-found ]
# The registration belongs to example.test: another server, even with
# the right secret, gets item-not-found and no push goes out.
n0=$(grep -c "$TOK_OK" "$T/record.jsonl")
$PEER connect --host 127.0.0.1 --port "$port" --from other.test \
    --to push.localhost --cafile "$T/ca.pem" --cert "$T/other.test.pem" \
    --key "$T/other.test.key" --auth external --bidi --timeout 10 \
    publish node=dev-ok "secret=$secret" >"$T/other.json"
check "publish from another domain: cancel/item-not-found" \
    [ "$(field "$T/other.json" publish condition)" = item-not-found ]
check "publish from another domain: nothing sent to APNs" \
    [ "$(grep -c "$TOK_OK" "$T/record.jsonl")" -eq "$n0" ]
# show peers while a stream is open.
peer ping sleep secs=10 >"$T/ping.json" 2>&1 &
PPID_=$!
wait_for "$T/ping.json" '"step": "ping"'
out=$("$CTL" -s "$d/sock" show peers)
kill "$PPID_" 2>/dev/null; wait "$PPID_" 2>/dev/null
check "show peers: example.test inbound, external, bidi" \
    sh -c "echo \"\$1\" | grep -Eq '^example.test +in +TLSv1\.[23] +external +yes'" x "$out"

# Dead tokens: a 410 newer than the registration deletes it; an older
# one (the device re-registered since) keeps it.
peer register node=dev-dead "token=$TOK_DEAD" >"$T/reg2.json"
s2=$(field "$T/reg2.json" register secret)
peer publish node=dev-dead "secret=$s2" >"$T/dead.json"
check "410 newer than the registration: cancel/item-not-found" \
    [ "$(field "$T/dead.json" publish condition)" = item-not-found ]
check "410: the registration is deleted" \
    sh -c "! '$CTL' -s '$d/sock' show node dev-dead >/dev/null 2>&1"
peer register node=dev-old "token=$TOK_OLD" >"$T/reg3.json"
s3=$(field "$T/reg3.json" register secret)
peer publish node=dev-old "secret=$s3" >"$T/old.json"
check "410 older than the registration: not cancel" \
    [ "$(field "$T/old.json" publish error_type)" = wait ]
check "410 older than the registration: registration kept" \
    sh -c "'$CTL' -s '$d/sock' show node dev-old >/dev/null"

# Operator-side and transient failures never say cancel.
peer register node=dev-op "token=$TOK_OP" >"$T/reg4.json"
peer publish node=dev-op "secret=$(field "$T/reg4.json" register secret)" >"$T/op.json"
check "403 credentials: wait/internal-server-error" \
    [ "$(field "$T/op.json" publish condition)" = internal-server-error ]
check "403: an operator alert is logged" grep -q "operator alert" "$d/stderr"
peer register node=dev-wait "token=$TOK_WAIT" >"$T/reg5.json"
peer publish node=dev-wait "secret=$(field "$T/reg5.json" register secret)" >"$T/wait.json"
check "500 every time: wait/remote-server-timeout after retries" \
    [ "$(field "$T/wait.json" publish condition)" = remote-server-timeout ]
check "500: retried (more than one request reached the mock)" \
    [ "$(grep -c "$TOK_WAIT" "$T/record.jsonl")" -gt 1 ]

# Token mode with a rate limit: the first goes at once, the rest of the
# interval is coalesced into one request, every IQ answered.
peer publish "node=$TOK_RATE" push-module=monalRate publish "node=$TOK_RATE" \
    push-module=monalRate publish "node=$TOK_RATE" push-module=monalRate \
    >"$T/rate.json"
check "rate limit: all three IQs answered with result" \
    [ "$(grep -c '"type": *"result"' "$T/rate.json")" -eq 3 ]
n=0
while [ $n -lt 50 ] && [ "$(grep -c "$TOK_RATE" "$T/record.jsonl")" -lt 2 ]; do
	sleep 0.1; n=$((n + 1))
done
check "rate limit: three publishes, two APNs requests (one coalesced)" \
    [ "$(grep -c "$TOK_RATE" "$T/record.jsonl")" -eq 2 ]

# Token mode: a dead token is blocked; the next publish is refused
# without asking Apple again.
peer publish "node=$TOK_GONE" push-module=monalRate >"$T/gone1.json"
check "token mode, 410: cancel/item-not-found" \
    [ "$(field "$T/gone1.json" publish condition)" = item-not-found ]
peer publish "node=$TOK_GONE" push-module=monalRate >"$T/gone2.json"
check "token mode, blocked token: item-not-found again" \
    [ "$(field "$T/gone2.json" publish condition)" = item-not-found ]
check "token mode, blocked token: Apple asked only once" \
    [ "$(grep -c "$TOK_GONE" "$T/record.jsonl")" -eq 1 ]
peer publish "node=$TOK_OK" push-module=no-such-app >"$T/mod.json"
check "token mode, unknown pushModule: item-not-found" \
    [ "$(field "$T/mod.json" publish condition)" = item-not-found ]

# Unregister, then the node is gone.
peer unregister node=dev-ok >"$T/unreg.json"
check "unregister: result" [ "$(field "$T/unreg.json" unregister type)" = result ]
peer publish node=dev-ok "secret=$secret" >"$T/gone.json"
check "publish after unregister: item-not-found" \
    [ "$(field "$T/gone.json" publish condition)" = item-not-found ]
out=$("$CTL" -s "$d/sock" show apns)
check "show apns counts the outcomes" sh -c "echo \"\$1\" | grep -q 'dead token 2'" x "$out"
check "show apns counts responses by status (410 twice, 403 once)" \
    sh -c "echo \"\$1\" | grep -q 'responses by status:.* 403: 1 410: 2'" x "$out"

"$CTL" -s "$d/sock" -j show stats >"$T/stats.json"
check "show stats: the counters add up" /usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["registrations"] == 5, s
assert s["unregistrations"] == 1, s
assert s["coalesced"] == 2, s
assert s["dead_token"] == 3 and s["deleted"] == 1, s
assert s["operator"] == 1 and s["transient"] == 1, s
assert s["sent"] == s["ok"] + s["dead_token"] + s["operator"] + \
    s["transient"] + s["throttled"] + s["queue_full"] + s["in_flight"], s
assert s["blocked_tokens"] == 1, s' "$T/stats.json"
kill -TERM "$DPID"; wait "$DPID"

# Privacy: the logs hold the policy's events; no secret, body or key
# anywhere on disk under the daemon's directories.
logs=$(cat "$d"/log/monalpush-*.log)
check "log: register event with JID, node and token" \
    sh -c "echo \"\$1\" | grep -q 'event register jid=user@example.test node=dev-ok token=$TOK_OK'" x "$logs"
check "log: push event" sh -c "echo \"\$1\" | grep -q 'event push jid=example.test node=dev-ok'" x "$logs"
check "log: token-dead event" sh -c "echo \"\$1\" | grep -q 'event token-dead node=dev-dead token=$TOK_DEAD status=410'" x "$logs"
check "nothing of the secrets, body or sender on the daemon's stderr" \
    sh -c "! grep -qaE '$secret|$s2|$s3|$BODY|$SENDER' '$d/stderr'"
# Every record decoded independently into exactly the policy's fields,
# every log line of a known kind with exactly its fields, and no secret,
# body, sender or private key line anywhere on disk.
/usr/bin/python3 "$TOP/regress/privacy_check.py" "$d/db" "$d/log" \
    "$secret" "$s2" "$s3" "$BODY" "$SENDER" \
    "$(sed -n 2p "$T/push.localhost.key")" "$(sed -n 2p "$T/example.test.key")"
finish
