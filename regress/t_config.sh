#!/bin/sh
# Configuration tests, run against "monalpushd -n":
# - regress/conf/NAME.conf: "-nv" prints NAME.conf.ok (after the paths
#   of the throwaway key material are replaced by @PKI@ and the TLS
#   library's default CA file by @SYSCA@), "configuration OK" goes to
#   stderr, and feeding the printed configuration back prints it again;
# - regress/conf/bad-NAME.conf: "-n" exits 1 and prints exactly
#   bad-NAME.conf.err (every error of the file in one run);
# - key files readable by group or others, and missing files, are refused;
# - the shipped example monalpush.conf passes, with its path macros
#   pointed at throwaway files by -D.
# The configurations name key material as $pki/FILE; the test passes
# -D pki=DIR with files made here by openssl(1).
# MONALPUSHD=/path/to/binary runs another build of the daemon.

TOP=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MONALPUSHD:-$TOP/monalpushd}
CONFDIR=$TOP/regress/conf

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; }

if [ ! -x "$BIN" ]; then
	fail "$BIN is not built"
	exit 1
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
pki=$tmp/pki
mkdir "$pki" || exit 1

# Throwaway key material: the parser only needs readable files, but real
# PEM keeps the files honest.
mkcert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
	    -nodes -days 2 -subj "/CN=$1" -keyout "$2.key" -out "$2.crt" \
	    >/dev/null 2>&1
}
if ! mkcert push.example.org "$pki/domain" ||
    ! mkcert apns.example "$pki/apns" ||
    ! openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$pki/authkey.p8" >/dev/null 2>&1; then
	fail "openssl could not make test keys"
	exit 1
fi
cp "$pki/domain.crt" "$pki/ca.pem"
chmod 600 "$pki/domain.key" "$pki/apns.key" "$pki/authkey.p8"

# The default CA file is the TLS library's; minimal.conf prints it.
sysca=$(cd "$CONFDIR" && "$BIN" -nv -D pki="$pki" -f minimal.conf \
    2>/dev/null | sed -n 's/^ca file "\(.*\)"$/\1/p')

normalize() {
	if [ -n "$sysca" ]; then
		sed -e "s|$pki|@PKI@|g" -e "s|\"$sysca\"|\"@SYSCA@\"|g"
	else
		sed -e "s|$pki|@PKI@|g"
	fi
}

# Good configurations: golden -nv output, stderr, round trip, plain -n.
for conf in "$CONFDIR"/*.conf; do
	name=$(basename "$conf")
	case "$name" in bad-*) continue ;; esac
	(cd "$CONFDIR" && "$BIN" -nv -D pki="$pki" -f "$name") \
	    >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -ne 0 ] || [ "$(cat "$tmp/err")" != "configuration OK" ]
	then
		fail "$name: -nv exited $rc: $(head -5 "$tmp/err")"
		continue
	fi
	normalize <"$tmp/out" >"$tmp/norm"
	if diff -u "$conf.ok" "$tmp/norm" >"$tmp/diff"; then
		pass "$name: -nv output matches $name.ok"
	else
		fail "$name: -nv output differs from $name.ok:"
		sed 's/^/	/' "$tmp/diff"
	fi
	"$BIN" -nv -f "$tmp/out" >"$tmp/out2" 2>"$tmp/err2"
	rc=$?
	if [ "$rc" -eq 0 ] && cmp -s "$tmp/out" "$tmp/out2"; then
		pass "$name: the printed configuration prints itself"
	else
		fail "$name: round trip (exit $rc): $(head -3 "$tmp/err2")"
		diff -u "$tmp/out" "$tmp/out2" | sed 's/^/	/'
	fi
	out=$(cd "$CONFDIR" && "$BIN" -n -D pki="$pki" -f "$name" \
	    2>"$tmp/err")
	if [ $? -eq 0 ] && [ "$out" = "configuration OK" ] &&
	    [ ! -s "$tmp/err" ]; then
		pass "$name: -n prints configuration OK on stdout only"
	else
		fail "$name: -n printed \"$out\" and \"$(cat "$tmp/err")\""
	fi
done

# Bad configurations: exit 1, nothing on stdout, exactly the errors.
for conf in "$CONFDIR"/bad-*.conf; do
	name=$(basename "$conf")
	(cd "$CONFDIR" && "$BIN" -n -D pki="$pki" -f "$name") \
	    >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -ne 1 ] || [ -s "$tmp/out" ]; then
		fail "$name: exit $rc, stdout \"$(cat "$tmp/out")\""
		continue
	fi
	normalize <"$tmp/err" >"$tmp/norm"
	if diff -u "$conf.err" "$tmp/norm" >"$tmp/diff"; then
		pass "$name: every error reported ($(wc -l <"$tmp/norm") lines)"
	else
		fail "$name: errors differ from $name.err:"
		sed 's/^/	/' "$tmp/diff"
	fi
done

# expect_refused WHAT DIR PATTERN...: minimal.conf with -D pki=DIR fails
# and stderr matches every pattern.
expect_refused() {
	what=$1
	dir=$2
	shift 2
	(cd "$CONFDIR" && "$BIN" -n -D pki="$dir" -f minimal.conf) \
	    >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -ne 1 ] || grep -q "configuration OK" "$tmp/out"; then
		fail "$what: accepted (exit $rc)"
		return
	fi
	for pat in "$@"; do
		if ! grep -q -- "$pat" "$tmp/err"; then
			fail "$what: no \"$pat\" in: $(cat "$tmp/err")"
			return
		fi
	done
	pass "$what: refused"
}

cp -p -R "$pki" "$tmp/pki644"
chmod 644 "$tmp/pki644/domain.key"
expect_refused "domain key of mode 0644" "$tmp/pki644" \
    "pki644/domain.key: key file is accessible by group or others (mode 0644)"

cp -p -R "$pki" "$tmp/pki640"
chmod 640 "$tmp/pki640/apns.key"
expect_refused "app key of mode 0640" "$tmp/pki640" \
    "pki640/apns.key: key file is accessible by group or others (mode 0640)"

expect_refused "missing key material" "$tmp/nonexistent" \
    "nonexistent/domain.crt: No such file" \
    "nonexistent/domain.key: No such file" \
    "nonexistent/apns.crt: No such file" \
    "nonexistent/apns.key: No such file"

# The retention promise, on its own.
printf 'log retention 15\n' >"$tmp/retention.conf"
"$BIN" -n -f "$tmp/retention.conf" >/dev/null 2>"$tmp/err"
rc=$?
want="retention.conf:1: log retention 15 days is too long: the privacy"
want="$want policy promises that logs are kept at most two weeks"
if [ "$rc" -eq 1 ] && grep -q "$want" "$tmp/err"; then
	pass "log retention 15 is refused with the privacy policy's reason"
else
	fail "log retention 15: exit $rc: $(cat "$tmp/err")"
fi

# A last line without a newline still counts ($(...) strips it).
printf '%s' "$(cat "$CONFDIR/minimal.conf")" >"$tmp/nonl.conf"
if [ "$(tail -c 1 "$tmp/nonl.conf")" = "}" ] &&
    "$BIN" -n -D pki="$pki" -f "$tmp/nonl.conf" >/dev/null 2>"$tmp/err"
then
	pass "a file whose last line has no newline"
else
	fail "a file whose last line has no newline: $(cat "$tmp/err")"
fi

"$BIN" -n -f "$tmp/no-such.conf" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 1 ] && grep -q "no-such.conf: No such file" "$tmp/err"; then
	pass "a missing configuration file is reported"
else
	fail "missing configuration file: exit $rc: $(cat "$tmp/err")"
fi

# The shipped example, its path macros pointed at throwaway files.
mkdir -p "$tmp/ssl/private" "$tmp/keys"
cp "$pki/domain.crt" "$tmp/ssl/push.example.org.crt"
cp -p "$pki/domain.key" "$tmp/ssl/private/push.example.org.key"
cp -p "$pki/authkey.p8" "$tmp/keys/AuthKey_ABC123DEFG.p8"
cp "$pki/apns.crt" "$tmp/keys/apns-sandbox.crt"
cp -p "$pki/apns.key" "$tmp/keys/apns-sandbox.key"
out=$("$BIN" -n -D ssl="$tmp/ssl" -D keys="$tmp/keys" \
    -f "$TOP/monalpush.conf" 2>"$tmp/err")
rc=$?
if [ "$rc" -eq 0 ] && [ "$out" = "configuration OK" ]; then
	pass "the example monalpush.conf passes -n"
else
	fail "the example monalpush.conf: exit $rc: $(cat "$tmp/err")"
fi
"$BIN" -nv -D ssl="$tmp/ssl" -D keys="$tmp/keys" -f "$TOP/monalpush.conf" \
    >"$tmp/out" 2>/dev/null
"$BIN" -nv -f "$tmp/out" >"$tmp/out2" 2>"$tmp/err"
if [ -s "$tmp/out" ] && cmp -s "$tmp/out" "$tmp/out2"; then
	pass "the example monalpush.conf round trips"
else
	fail "the example monalpush.conf round trip: $(cat "$tmp/err")"
fi
exit 0
