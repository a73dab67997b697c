#!/bin/sh
# monalpushctl against a running daemon: status, log level, the
# registration commands (counts, one node, unregister) in text and
# JSON, refusals with clear messages, and the control socket's mode.
. "$(dirname "$0")/lib.sh"
need_root "control tests"
REGTOOL=$TOP/regress/regtool

d=$(conf_base ctl)
tok1=$(printf 'ab%.0s' $(seq 1 32))
tok2=$(printf 'CD%.0s' $(seq 1 40))
"$REGTOOL" "$d/db" register monalProdiOS node-one "$tok1" example.test >"$T/secret1"
"$REGTOOL" "$d/db" register monalProdiOS node-two "$tok2" example.org >/dev/null
start_daemon "$d" || { fail "daemon starts"; finish; }

mode=$(stat -c %a "$d/sock")
check "control socket mode 0660 (is $mode)" [ "$mode" = 660 ]

out=$("$CTL" -s "$d/sock" show status)
check "show status: configuration file" sh -c "echo \"\$1\" | grep -q '$d/monalpush.conf'" x "$out"
check "show status: four processes with pids" \
    [ "$(echo "$out" | grep -Ec '^(parent|xmppe|apnse|logd) +[0-9]+ ')" -eq 4 ]
check "unique prefix: 'sh statu' is show status" \
    sh -c "'$CTL' -s '$d/sock' sh statu | grep -q '^logd '"
if "$CTL" -s "$d/sock" sh st >"$T/out" 2>&1; then
	fail "ambiguous prefix 'sh st' refused"
else
	check "ambiguous prefix 'sh st' refused with a message" \
	    grep -q "ambiguous argument: st" "$T/out"
fi

check "log verbose" "$CTL" -s "$d/sock" log verbose
check "log verbose logged" grep -q "log level set to verbose" "$d/stderr"
out=$("$CTL" -s "$d/sock" -j show status)
check "show status -j reports verbose 1" sh -c "echo \"\$1\" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"verbose\"] == 1'" x "$out"
check "log brief" "$CTL" -s "$d/sock" log brief

out=$("$CTL" -s "$d/sock" show registrations)
check "show registrations counts 2 for monalProdiOS" \
    sh -c "echo \"\$1\" | grep -Eq 'monalProdiOS +2'" x "$out"
out=$("$CTL" -s "$d/sock" -v show registrations)
check "show registrations -v lists both nodes" \
    sh -c "echo \"\$1\" | grep -q node-one && echo \"\$1\" | grep -q node-two" x "$out"

out=$("$CTL" -s "$d/sock" show node node-one)
check "show node: token shortened" sh -c "echo \"\$1\" | grep -q 'abababab\.\.\.' && ! echo \"\$1\" | grep -q '$tok1'" x "$out"
check "show node: domain" sh -c "echo \"\$1\" | grep -q example.test" x "$out"
secret=$(cat "$T/secret1")
check "show node: never the secret" sh -c "! echo \"\$1\" | grep -qi '$secret'" x "$out"
out=$("$CTL" -s "$d/sock" -v show node node-one)
check "show node -v: full token" sh -c "echo \"\$1\" | grep -q '$tok1'" x "$out"
out=$("$CTL" -s "$d/sock" -j show node node-two)
check "show node -j: JSON with the normalised token" \
    sh -c "echo \"\$1\" | /usr/bin/python3 -c 'import json,sys; d=json.dumps(json.load(sys.stdin)); assert \"node-two\" in d and \"cdcdcdcd\" in d'" x "$out"

check "unregister node-one" "$CTL" -s "$d/sock" unregister node-one
if "$CTL" -s "$d/sock" show node node-one >"$T/out" 2>&1; then
	fail "show node of an unregistered node fails"
else
	pass "show node of an unregistered node fails"
fi
check "the failure names the node" grep -q node-one "$T/out"
if "$CTL" -s "$d/sock" unregister no-such-node >"$T/out" 2>&1; then
	fail "unregister of an unknown node fails"
else
	pass "unregister of an unknown node fails"
fi
out=$("$CTL" -s "$d/sock" show registrations)
check "count is 1 after unregister" sh -c "echo \"\$1\" | grep -Eq 'monalProdiOS +1'" x "$out"

# A user other than root is refused by the daemon.
if runuser -u nobody -- "$CTL" -s "$d/sock" show status >"$T/out" 2>&1; then
	fail "non-root control client refused"
else
	pass "non-root control client refused"
fi
kill -TERM "$DPID"; wait "$DPID"
check "registration survives a restart" sh -c "'$REGTOOL' '$d/db' get node-two | grep -q 'domain=example.org'"
check "unregistered node is gone after restart" sh -c "! '$REGTOOL' '$d/db' get node-one 2>/dev/null"

# A damaged store stops the daemon with a message naming the directory
# and what to do; it never starts empty.
d=$(conf_base damaged)
mkdir -p "$d/db"
echo "this is not a Berkeley DB B-tree" >"$d/db/nodes.db"
"$DAEMON" -d -f "$d/monalpush.conf" >"$d/stderr" 2>&1
check "damaged store: the daemon refuses to start" [ $? -ne 0 ]
check "damaged store: the message names the directory" grep -q "$d/db" "$d/stderr"
check "damaged store: the message says what to do" grep -qi "backup\|db_recover" "$d/stderr"
check "damaged store: the file is left as it was" \
    grep -q "this is not a Berkeley DB" "$d/db/nodes.db"
finish
