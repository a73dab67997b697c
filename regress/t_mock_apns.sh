#!/bin/sh
# Tests regress/mock_apns, the APNs stand-in other tests rely on: statuses
# and reasons, Apple's checks, certificate and token auth, the script, the
# record and stats files, the stream limit.  Uses curl (HTTP/2), openssl
# and perl.
cd "$(dirname "$0")/.." || exit 1
MOCK=${MOCK_APNS:-regress/mock_apns}

if [ ! -x "$MOCK" ]; then
	echo "SKIP: $MOCK not built"
	exit 0
fi
if ! curl -V 2>/dev/null | grep -q HTTP2; then
	echo "SKIP: curl without HTTP2"
	exit 0
fi

tmp=$(mktemp -d) || exit 1
pids=""
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

failed=0
check() {	# check GOT WANT WHAT
	if [ "$1" = "$2" ]; then
		echo "PASS: $3"
	else
		echo "FAIL: $3: got '$1', want '$2'"
		failed=1
	fi
}
check_grep() {	# check_grep PATTERN FILE WHAT
	if grep -q -- "$1" "$2"; then
		echo "PASS: $3"
	else
		echo "FAIL: $3: no '$1' in $(cat "$2")"
		failed=1
	fi
}

# wait_for PATTERN FILE: bounded poll, 10 s at most.
wait_for() {
	i=0
	while ! grep -q -- "$1" "$2" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 200 ] && return 1
		sleep 0.05
	done
	return 0
}

# start_mock NAME ARGS...: sets port and pid
start_mock() {
	name=$1
	shift
	"$MOCK" -p 0 -c "$tmp/localhost.pem" -k "$tmp/localhost.key" "$@" \
	    >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pid=$!
	pids="$pids $pid"
	if ! wait_for "^listening on 127.0.0.1 port " "$tmp/$name.out"; then
		echo "FAIL: $name did not start: $(cat "$tmp/$name.err")"
		exit 1
	fi
	port=$(sed -n 's/^listening on 127.0.0.1 port //p' "$tmp/$name.out")
}

# post PORT PATH [curl args]: prints the status, body in $tmp/body,
# headers in $tmp/hdrs
post() {
	p=$1
	path=$2
	shift 2
	: >"$tmp/body"
	curl -sS --http2 --max-time 5 --cacert "$tmp/ca.pem" \
	    --resolve "localhost:$p:127.0.0.1" -o "$tmp/body" \
	    -D "$tmp/hdrs" -w '%{http_code}' "$@" "https://localhost:$p$path" \
	    2>"$tmp/curl.err"
}

std="-H apns-topic:im.monal.test -H apns-push-type:alert -H apns-priority:10"
alert='{"aps":{"alert":{"title":"New Message"},"mutable-content":1}}'
tok=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
tok410=${tok%??}41
tok400=${tok%??}40
tokonce=${tok%??}01
tokdrop=${tok%??}dd
tok503=${tok%??}53
tokhup=${tok%??}11
tokdelay=${tok%??}de
tokhang=${tok%??}ee

if ! sh regress/ca.sh "$tmp" localhost client >"$tmp/ca.log" 2>&1; then
	echo "FAIL: ca.sh: $(cat "$tmp/ca.log")"
	exit 1
fi
check "$(stat -c %a "$tmp/jwt.key")" 600 "ca.sh makes keys mode 0600"
check_grep "BEGIN PRIVATE KEY" "$tmp/jwt.key" "ca.sh jwt.key is PKCS#8"

cat >"$tmp/script" <<EOF
# test script
$tok410 410 1700000000000
$tok400 400 DeviceTokenNotForTopic
$tokonce once 500
$tokdrop drop
$tok503 503
$tokdelay delay 300
$tokhang hang
EOF

# --- no auth, with script, record and stats
start_mock plain -s "$tmp/script" -r "$tmp/record" -S "$tmp/stats"
mport=$port
mpid=$pid

uuid=1B2C3D4E-0000-4000-8000-00000000ABCD
got=$(post $mport /3/device/$tok $std -H "apns-id:$uuid" -d "$alert")
check "$got" 200 "200 for a good alert push"
check_grep "apns-id: $uuid" "$tmp/hdrs" "apns-id echoed"
got=$(post $mport /3/device/$tok $std -d "$alert")
check_grep "^apns-id: [0-9A-F-]\{36\}" "$tmp/hdrs" "fresh apns-id"

got=$(post $mport /3/device/$tok410 $std -d "$alert")
check "$got $(cat "$tmp/body")" \
    '410 {"reason":"Unregistered","timestamp":1700000000000}' \
    "410 Unregistered with timestamp"

got=$(post $mport /3/device/$tok -H apns-topic:im.monal.test \
    -H apns-push-type:background -H apns-priority:10 \
    -d '{"aps":{"content-available":1}}')
check "$got $(cat "$tmp/body")" '400 {"reason":"BadPriority"}' \
    "400 BadPriority for background with priority 10"
got=$(post $mport /3/device/$tok -H apns-topic:im.monal.test \
    -H apns-push-type:background -H apns-priority:5 \
    -d '{"aps":{"content-available":1}}')
check "$got" 200 "200 for background with priority 5"

got=$(post $mport /3/device/$tok -H apns-push-type:alert -d "$alert")
check "$got $(cat "$tmp/body")" '400 {"reason":"MissingTopic"}' \
    "400 MissingTopic"

big=$(head -c 4200 /dev/zero | tr '\0' x)
printf '{"aps":{},"x":"%s"}' "$big" >"$tmp/big"
got=$(post $mport /3/device/$tok $std --data-binary @"$tmp/big")
check "$got $(cat "$tmp/body")" '413 {"reason":"PayloadTooLarge"}' \
    "413 PayloadTooLarge over 4096 bytes"
got=$(post $mport /3/device/$tok -H apns-topic:im.monal.test.voip \
    -H apns-push-type:voip -H apns-priority:10 --data-binary @"$tmp/big")
check "$got" 200 "voip may carry up to 5120 bytes"

got=$(post $mport /3/device/abc $std -d "$alert")
check "$got $(cat "$tmp/body")" '400 {"reason":"BadDeviceToken"}' \
    "400 BadDeviceToken for a short token"
got=$(post $mport /3/other $std -d "$alert")
check "$got $(cat "$tmp/body")" '404 {"reason":"BadPath"}' "404 BadPath"
got=$(post $mport /3/device/$tok $std -X GET)
check "$got $(cat "$tmp/body")" '405 {"reason":"MethodNotAllowed"}' \
    "405 MethodNotAllowed"
got=$(post $mport /3/device/$tok $std -H apns-push-type:nonsense -d "$alert")
check "$got $(cat "$tmp/body")" '400 {"reason":"InvalidPushType"}' \
    "400 InvalidPushType"
got=$(post $mport /3/device/$tok $std -H apns-expiration:-1 -d "$alert")
check "$got $(cat "$tmp/body")" '400 {"reason":"BadExpirationDate"}' \
    "400 BadExpirationDate"
got=$(post $mport /3/device/$tok $std \
    -H "apns-collapse-id:$(head -c 65 /dev/zero | tr '\0' c)" -d "$alert")
check "$got $(cat "$tmp/body")" '400 {"reason":"BadCollapseId"}' \
    "400 BadCollapseId over 64 bytes"
got=$(post $mport /3/device/$tok $std -d '[1]')
check "$got $(cat "$tmp/body")" '400 {"reason":"BadPayload"}' "400 BadPayload"

got=$(post $mport /3/device/$tok400 $std -d "$alert")
check "$got $(cat "$tmp/body")" '400 {"reason":"DeviceTokenNotForTopic"}' \
    "script: 400 DeviceTokenNotForTopic"
got=$(post $mport /3/device/$tokonce $std -d "$alert")
check "$got" 500 "script: once 500, first request"
got=$(post $mport /3/device/$tokonce $std -d "$alert")
check "$got" 200 "script: once 500, then 200"
got=$(post $mport /3/device/$tokdrop $std -d "$alert")
check "$got" 000 "script: drop closes without an answer"
got=$(post $mport /3/device/$tok503 $std -d "$alert")
check "$got $(cat "$tmp/body")" '503 {"reason":"ServiceUnavailable"}' \
    "script: 503 ServiceUnavailable"

got=$(post $mport /3/device/$tokdelay $std -d "$alert" \
    -w '%{http_code} %{time_total}')
check "$(echo "$got" | awk '{ print $1, ($2 >= 0.3) }')" "200 1" \
    "script: delay 300 answers 200 after 300 ms"
got=$(post $mport /3/device/$tokhang $std -d "$alert" --max-time 0.5)
check "$got" 000 "script: hang never answers"

check_grep "\"path\":\"/3/device/$tok\",\"headers\":{[^}]*\"apns-topic\":\"im.monal.test\"[^}]*},\"body\":\"{\\\\\"aps\\\\\"" \
    "$tmp/record" "record line has path, headers and body"
check_grep "\"status\":410," "$tmp/record" "record line has the status"

kill -USR1 $mpid
if wait_for "^stats written" "$tmp/plain.out"; then
	check_grep '"requests":22,' "$tmp/stats" "stats: request count"
	check_grep '"200":6[,}]' "$tmp/stats" "stats: count by status"
	check_grep '"goaways_sent":1,' "$tmp/stats" "stats: GOAWAY after 503"
	check_grep '"drops":1' "$tmp/stats" "stats: drop counted"
else
	echo "FAIL: no stats after SIGUSR1"
	failed=1
fi

echo "$tokhup 429" >>"$tmp/script"
kill -HUP $mpid
wait_for "^script reloaded" "$tmp/plain.out"
got=$(post $mport /3/device/$tokhup $std -d "$alert")
check "$got $(cat "$tmp/body")" '429 {"reason":"TooManyRequests"}' \
    "script reloaded on SIGHUP"

# --- certificate auth
start_mock cert -C "$tmp/ca.pem"
got=$(post $port /3/device/$tok $std -d "$alert")
check "$got $(cat "$tmp/body")" '403 {"reason":"MissingProviderToken"}' \
    "certificate auth: 403 without a client certificate"
got=$(post $port /3/device/$tok $std --cert "$tmp/client.pem" \
    --key "$tmp/client.key" -d "$alert")
check "$got" 200 "certificate auth: 200 with a client certificate"

# --- token auth
b64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}
# jwt KEYFILE KID ISS IAT: an ES256 JWT with a raw r||s signature
jwt() {
	h=$(printf '{"alg":"ES256","kid":"%s"}' "$2" | b64url)
	c=$(printf '{"iss":"%s","iat":%s}' "$3" "$4" | b64url)
	printf '%s' "$h.$c" |
	    openssl dgst -sha256 -sign "$1" -out "$tmp/sig.der" || return 1
	rs=$(openssl asn1parse -inform DER -in "$tmp/sig.der" |
	    awk -F: '/INTEGER/ { v = $NF; while (length(v) < 64) v = "0" v;
		printf "%s", v }')
	s=$(perl -e 'print pack("H*", $ARGV[0])' "$rs" | b64url)
	printf '%s.%s.%s' "$h" "$c" "$s"
}
start_mock token -J "$tmp/jwt.pub" -K KEY123 -T TEAM456
now=$(date +%s)
got=$(post $port /3/device/$tok $std \
    -H "authorization:bearer $(jwt "$tmp/jwt.key" KEY123 TEAM456 $now)" \
    -d "$alert")
check "$got" 200 "token auth: 200 with a valid JWT"
got=$(post $port /3/device/$tok $std \
    -H "authorization:bearer $(jwt "$tmp/ca.key" KEY123 TEAM456 $now)" \
    -d "$alert")
check "$got $(cat "$tmp/body")" '403 {"reason":"InvalidProviderToken"}' \
    "token auth: 403 for a bad signature"
got=$(post $port /3/device/$tok $std \
    -H "authorization:bearer $(jwt "$tmp/jwt.key" OTHER TEAM456 $now)" \
    -d "$alert")
check "$got $(cat "$tmp/body")" '403 {"reason":"InvalidProviderToken"}' \
    "token auth: 403 for a wrong key id"
got=$(post $port /3/device/$tok $std \
    -H "authorization:bearer $(jwt "$tmp/jwt.key" KEY123 TEAM456 \
    $((now - 7200)))" -d "$alert")
check "$got $(cat "$tmp/body")" '403 {"reason":"ExpiredProviderToken"}' \
    "token auth: 403 for an old JWT"
got=$(post $port /3/device/$tok $std -d "$alert")
check "$got $(cat "$tmp/body")" '403 {"reason":"MissingProviderToken"}' \
    "token auth: 403 without a JWT"

# --- streams over SETTINGS_MAX_CONCURRENT_STREAMS: three open streams
# sent raw before our SETTINGS are acknowledged, with a limit of 2.
start_mock limit -m 2 -S "$tmp/lstats"
path=$(printf '/3/device/%s' "$tok" | perl -e 'print unpack("H*", <STDIN>)')
hpack="8387044a${path}01096c6f63616c686f7374"
frames="505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000000040000000000"
for id in 01 03 05; do
	frames="${frames}0000590104000000${id}${hpack}"
done
perl -e 'print pack("H*", $ARGV[0])' "$frames" |
    openssl s_client -quiet -no_ign_eof -alpn h2 -connect "127.0.0.1:$port" \
    >/dev/null 2>&1
i=0
while :; do
	kill -USR1 $pid
	wait_for "^stats written" "$tmp/limit.out"
	grep -q '"streams_over_limit":1,' "$tmp/lstats" && break
	i=$((i + 1))
	[ $i -gt 20 ] && break
	sleep 0.1
done
check_grep '"streams_over_limit":1,' "$tmp/lstats" \
    "stream over the limit counted"

exit $failed
