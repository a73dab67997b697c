#!/bin/sh
# SIGHUP and monalpushctl reload: a good file is applied and the
# children get it, a bad one is refused with its errors logged and the
# running configuration kept, and the daemon serves throughout.
. "$(dirname "$0")/lib.sh"
need_root "reload tests"

d=$(conf_base reload)
start_daemon "$d" || { fail "daemon starts"; finish; }
n0=$(grep -c "apnse info: configuration: 1 app" "$d/stderr")

# A good change: a second app.
cat >>"$d/monalpush.conf" <<CONF
app "monalProdiOS-sandbox" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	certificate "$T/push.localhost.pem" key "$T/push.localhost.key"
}
CONF
kill -HUP "$DPID"
check "good reload applied" wait_for "$d/stderr" "configuration reloaded"
check "apnse got the new configuration" wait_for "$d/stderr" "apnse info: configuration: 2 apps"
check "show registrations lists the new app" \
    sh -c "'$CTL' -s '$d/sock' show registrations | grep -q monalProdiOS-sandbox"

# A bad change: errors logged, running configuration kept.
cp "$d/monalpush.conf" "$d/good.conf"
echo "log retention 30" >>"$d/monalpush.conf"
echo "bogus keyword" >>"$d/monalpush.conf"
if "$CTL" -s "$d/sock" reload >"$d/ctl.out" 2>&1; then
	fail "bad reload refused by monalpushctl"
else
	pass "bad reload refused by monalpushctl"
fi
check "bad reload: errors logged with file:line" \
    grep -q "monalpush.conf:[0-9]*: " "$d/stderr"
check "bad reload: running configuration kept" \
    grep -q "reload failed" "$d/stderr"
check "daemon still serving after a bad reload" \
    sh -c "'$CTL' -s '$d/sock' show status | grep -qw xmppe"
check "show registrations still lists the app" \
    sh -c "'$CTL' -s '$d/sock' show registrations | grep -q monalProdiOS-sandbox"

# An unsafe key file is refused at reload too.
cp "$d/good.conf" "$d/monalpush.conf"
cp "$T/push.localhost.key" "$d/open.key"
chmod 0644 "$d/open.key"
sed "s|key \"$T/push.localhost.key\"|key \"$d/open.key\"|" "$d/good.conf" >"$d/monalpush.conf"
kill -HUP "$DPID"
check "group/world-readable key refused at reload" \
    wait_for "$d/stderr" "reload failed: key material"
kill -TERM "$DPID"
wait "$DPID"
check "exit 0 after reloads" [ $? -eq 0 ]
finish
