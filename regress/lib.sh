# Shared by the regress/t_*.sh scripts: PASS/FAIL/SKIP lines, a temporary
# directory removed on exit, processes stopped on exit, bounded waits.
TOP=$(cd "$(dirname "$0")/.." && pwd)
DAEMON=$TOP/regress/monalpushd-test
CTL=$TOP/monalpushctl/monalpushctl
T=$(mktemp -d /tmp/monalpushd-test.XXXXXX)
chmod 0755 "$T"
PIDS=""
failed=0

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
skip() { echo "SKIP: $*"; }
check() { # check "what" command...
	_check_what=$1; shift
	if "$@"; then pass "$_check_what"; else fail "$_check_what"; fi
}

cleanup() {
	for p in $PIDS; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $PIDS; do
		wait "$p" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

need_root() {
	if [ "$(id -u)" != 0 ]; then
		skip "$1: needs root (chroot, setuid, sandbox)"
		exit 0
	fi
}

free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_for FILE PATTERN [TENTHS]: poll until a line matches (default 10 s).
wait_for() {
	n=${3:-100}
	while [ "$n" -gt 0 ]; do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		n=$((n - 1))
	done
	echo "# timed out waiting for '$2' in $1"
	return 1
}

# wait_gone PID [TENTHS]: poll until the process is gone.
wait_gone() {
	n=${2:-100}
	while [ "$n" -gt 0 ]; do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

# certs DIR NAME...: a test CA and certificates for NAMEs.
certs() {
	sh "$TOP/regress/ca.sh" "$@" >/dev/null 2>&1
}

# conf_base NAME: writes $T/NAME.conf for a daemon under $T/NAME.
conf_base() {
	d=$T/$1
	mkdir -p "$d"
	[ -f "$T/ca.pem" ] || certs "$T" push.localhost
	port=$(free_port)
	cat >"$d/monalpush.conf" <<CONF
listen on 127.0.0.1 port $port
domain "push.localhost" {
	certificate "$T/push.localhost.pem"
	key "$T/push.localhost.key"
}
app "monalProdiOS" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	host "127.0.0.1"
	port 1
	certificate "$T/push.localhost.pem" key "$T/push.localhost.key"
	default
}
log directory "$d/log"
database "$d/db"
control socket "$d/sock"
CONF
	echo "$d"
}

# start_daemon DIR: runs the test build in the foreground, waits for
# its startup line; sets DPID.
start_daemon() {
	"$DAEMON" -d -f "$1/monalpush.conf" ${2:-} >"$1/stderr" 2>&1 &
	DPID=$!
	PIDS="$PIDS $DPID"
	wait_for "$1/stderr" "startup:" || { cat "$1/stderr"; return 1; }
}

child_pid() { # child_pid DAEMONPID NAME: by its process title
	for c in $(pgrep -P "$1"); do
		if tr '\0' ' ' </proc/$c/cmdline | grep -q "^monalpushd[-a-z]*: $2 "; then
			echo "$c"
			return 0
		fi
	done
	return 1
}

# start_mock [SCRIPT]: the mock APNs on a free port, with the test CA's
# certificate for 127.0.0.1, client certificates required, every request
# recorded in $T/record.jsonl; sets MOCKPORT.  Needs certs ... 127.0.0.1.
start_mock() {
	"$TOP/regress/mock_apns" -p 0 -c "$T/127.0.0.1.pem" \
	    -k "$T/127.0.0.1.key" -C "$T/ca.pem" -r "$T/record.jsonl" \
	    ${1:+-s "$1"} >"$T/mock.out" 2>&1 &
	PIDS="$PIDS $!"
	wait_for "$T/mock.out" "listening on" || return 1
	MOCKPORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$T/mock.out")
}

# conf_mock NAME: writes $T/NAME/monalpush.conf for a daemon on a free
# port ($port) whose default app "monalProdiOS" sends to the mock APNs
# (start_mock first) without a rate limit; tests append what they need
# (more apps, routes, limits) with cat >>.  Prints the directory.
conf_mock() {
	_d=$T/$1
	mkdir -p "$_d"
	port=$(free_port)
	cat >"$_d/monalpush.conf" <<CONF
listen on 127.0.0.1 port $port
domain "push.localhost" {
	certificate "$T/push.localhost.pem"
	key "$T/push.localhost.key"
}
app "monalProdiOS" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	host "127.0.0.1"
	port $MOCKPORT
	certificate "$T/push.localhost.pem" key "$T/push.localhost.key"
	ca "$T/ca.pem"
	rate limit 0
	default
}
ca file "$T/ca.pem"
log directory "$_d/log"
database "$_d/db"
control socket "$_d/sock"
CONF
}

finish() {
	exit $((failed > 0))
}
