#!/bin/sh
# 1,000 concurrent authenticated s2s streams (STARTTLS, bidi, SASL
# EXTERNAL), every one publishing: each publish answered once with a
# result, none lost, and the daemon still serves the next peer.
. "$(dirname "$0")/lib.sh"
need_root "concurrent streams test"
LG=$TOP/bench/loadgen
[ -x "$LG" ] || make -C "$TOP" -s bench/loadgen >/dev/null 2>&1
[ -x "$LG" ] || { fail "bench/loadgen builds"; finish; }
N=1000

certs "$T" push.localhost example.test 127.0.0.1 || { fail "test CA"; finish; }
start_mock || { fail "mock APNs starts"; finish; }
conf_mock streams
d=$T/streams
cat >>"$d/monalpush.conf" <<CONF
max connections $((N + 100))
max connections per peer $((N + 100))
CONF
"$LG" populate "$d/db" 2000 monalProdiOS example.test "$T/nodes.txt" \
    >/dev/null 2>&1 || { fail "registrations populated"; finish; }
start_daemon "$d" || { fail "daemon starts"; finish; }

# Every stream publishes: 1,000 streams, 1,500 publishes over 3 s.
out=$("$LG" run -p "$port" -d "$T" -N "$T/nodes.txt" -c $N -r 500 -t 3 2>&1)
rc=$?
echo "# $out" | tail -2
check "loadgen: $N streams up and every publish answered (exit $rc)" [ $rc -eq 0 ]
sent=$(echo "$out" | sed -n 's/.* sent=\([0-9]*\).*/\1/p' | tail -1)
replies=$(echo "$out" | sed -n 's/.* replies=\([0-9]*\).*/\1/p' | tail -1)
lost=$(echo "$out" | sed -n 's/.* lost=\([0-9]*\).*/\1/p' | tail -1)
errors=$(echo "$out" | sed -n 's/.* errors=\([0-9]*\).*/\1/p' | tail -1)
check "publishes sent over $N streams (sent=$sent)" [ "${sent:-0}" -ge $N ]
check "every publish answered once (replies=$replies)" [ "${replies:-0}" -eq "${sent:-x}" ]
check "none lost, no error replies (lost=$lost errors=$errors)" \
    [ "${lost:-1}" -eq 0 -a "${errors:-1}" -eq 0 ]
check "the mock received them all" \
    [ "$(grep -c '"status":200' "$T/record.jsonl")" -ge "${sent:-1}" ]
out=$(/usr/bin/python3 "$TOP/regress/s2speer.py" connect --host 127.0.0.1 \
    --port "$port" --from example.test --to push.localhost \
    --cafile "$T/ca.pem" --cert "$T/example.test.pem" \
    --key "$T/example.test.key" --auth external --bidi ping)
check "the daemon still serves the next peer" \
    sh -c "echo \"\$1\" | grep -q '\"step\": \"ping\".*\"type\": \"result\"'" x "$out"
finish
