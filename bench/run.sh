#!/bin/sh
# make bench: the APNs client alone against the mock APNs, then the whole
# daemon driven over s2s by bench/loadgen with the mock APNs as the sink:
# saturation, a fixed 5,000 pushes/s, CPU and RSS of every process, and
# the memory of idle streams.  Everything runs on loopback under a
# temporary directory and is stopped at the end.  See bench/README.md.
#
# Environment: BENCH_SECONDS (measured seconds per run, default 5),
# BENCH_IDLE (stream counts for the idle test, default "1000 10000"),
# BENCH_DAEMON_ENV (variables for the daemon, e.g.
# EVENT_EPOLL_USE_CHANGELIST=1).
set -e
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
if [ "$(id -u)" != 0 ]; then
	echo "bench: run as root: the daemon chroots and drops privileges" >&2
	exit 1
fi
make --no-print-directory -s all regress bench/loadgen bench/apns_bench

SECS=${BENCH_SECONDS:-5}
IDLE=${BENCH_IDLE:-1000 10000}
NODES=10000
LG=$TOP/bench/loadgen
AB=$TOP/bench/apns_bench
MOCK=$TOP/regress/mock_apns
D=$(mktemp -d /tmp/monalpushd-bench.XXXXXX)
chmod 0755 "$D"
MPID=""
DPID=""
FAILED=0

stop_daemon() {
	if [ -n "$DPID" ]; then
		kill -TERM "$DPID" 2>/dev/null || true
		wait "$DPID" 2>/dev/null || true
	fi
	DPID=""
}
stop_mock() {
	if [ -n "$MPID" ]; then
		kill -TERM "$MPID" 2>/dev/null || true
		wait "$MPID" 2>/dev/null || true
	fi
	MPID=""
}
cleanup() {
	stop_daemon
	stop_mock
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

wait_line() { # FILE PATTERN: up to 10 s
	_w=100
	until grep -q "$2" "$1" 2>/dev/null; do
		_w=$((_w - 1))
		if [ $_w -eq 0 ]; then
			echo "bench: timed out waiting for '$2' in $1" >&2
			cat "$1" >&2
			exit 1
		fi
		sleep 0.1
	done
}
free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
kv() { # LINE KEY: the value of KEY=value in a result line
	echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}
# start_mock [taskset cpu] [max streams]: sets MPID, MOCKPORT
start_mock() {
	: >"$D/mock.out"
	if [ -n "$1" ]; then
		taskset -c "$1" "$MOCK" -p 0 -c "$D/127.0.0.1.pem" \
		    -k "$D/127.0.0.1.key" -C "$D/ca.pem" ${2:+-m $2} \
		    >"$D/mock.out" 2>&1 &
	else
		"$MOCK" -p 0 -c "$D/127.0.0.1.pem" -k "$D/127.0.0.1.key" \
		    -C "$D/ca.pem" >"$D/mock.out" 2>&1 &
	fi
	MPID=$!
	wait_line "$D/mock.out" "listening on"
	MOCKPORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$D/mock.out")
}
child_pid() { # NAME: a child of the daemon by its process title
	for c in $(pgrep -P "$DPID"); do
		if tr '\0' ' ' </proc/$c/cmdline | grep -q "^monalpushd: $1 "; then
			echo "$c"
			return 0
		fi
	done
	echo "bench: no $1 process" >&2
	exit 1
}
start_daemon() {
	: >"$D/stderr"
	env $BENCH_DAEMON_ENV ./monalpushd -d -f "$D/monalpush.conf" \
	    >"$D/stderr" 2>&1 &
	DPID=$!
	wait_line "$D/stderr" "startup:"
	sleep 0.5	# the children log their configuration after startup
	PROCS="-P parent=$DPID -P xmppe=$(child_pid xmppe)"
	PROCS="$PROCS -P apnse=$(child_pid apnse) -P logd=$(child_pid logd)"
	PROCS="$PROCS -P mock=$MPID"
}

echo "== test CA in $D"
sh regress/ca.sh "$D" push.localhost example.test 127.0.0.1 >/dev/null 2>&1
model=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
echo "machine: $(nproc) CPUs, $model"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# (a) apns.c alone: mock on CPU 1, client on CPU 0; 256 requests in
# flight, spread over 1 or 4 connections by the mock's stream limit.
WIN=256
for c in 1 4; do
	start_mock 1 $((WIN / c))
	line=$(taskset -c 0 "$AB" -p "$MOCKPORT" -d "$D" -c $c -w $WIN \
	    -t "$SECS" -P "$MPID") || FAILED=1
	echo "$line"
	eval "AB$c=\"\$line\""
	stop_mock
done

echo "== $NODES registrations, the mock APNs, monalpushd"
"$LG" populate "$D/db" $NODES monalProdiOS example.test "$D/nodes.txt"
start_mock
PORT=$(free_port)
cat >"$D/monalpush.conf" <<CONF
listen on 127.0.0.1 port $PORT
max connections 30000
max connections per peer 30000
domain "push.localhost" {
	certificate "$D/push.localhost.pem"
	key "$D/push.localhost.key"
}
app "monalProdiOS" {
	topic "G7YU7X7KRJ.SworIM"
	environment sandbox
	host "127.0.0.1"
	port $MOCKPORT
	certificate "$D/push.localhost.pem" key "$D/push.localhost.key"
	ca "$D/ca.pem"
	rate limit 0
	default
}
ca file "$D/ca.pem"
log directory "$D/log"
database "$D/db"
control socket "$D/sock"
CONF
./monalpushd -n -f "$D/monalpush.conf" >/dev/null
start_daemon

# (b) saturation, (c) a fixed rate; CPU and RSS of every process over
# the measured seconds.
SAT=$("$LG" run -p "$PORT" -d "$D" -N "$D/nodes.txt" -c 4 -w 512 \
    -t "$SECS" $PROCS) || FAILED=1
echo "$SAT"
SAT64=$("$LG" run -p "$PORT" -d "$D" -N "$D/nodes.txt" -c 64 -w 512 \
    -t "$SECS" $PROCS) || FAILED=1
echo "$SAT64"
FIX=$("$LG" run -p "$PORT" -d "$D" -N "$D/nodes.txt" -c 16 -r 5000 \
    -t "$SECS" $PROCS) || FAILED=1
echo "$FIX"
# The same with TCP_QUICKACK on the generator's sockets: the difference
# is what Nagle's algorithm on the daemon's side of the stream costs.
FIXQ=$("$LG" run -q -p "$PORT" -d "$D" -N "$D/nodes.txt" -c 16 -r 5000 \
    -t "$SECS" $PROCS) || FAILED=1
echo "$FIXQ"

# (e) idle streams, each count on a fresh daemon.
IDLES=""
for n in $IDLE; do
	stop_daemon
	start_daemon
	if line=$("$LG" idle -p "$PORT" -d "$D" -c "$n" \
	    -P "xmppe=$(child_pid xmppe)"); then
		echo "$line"
		IDLES="$IDLES $n:$(kv "$line" xmppe_per_stream)"
	else
		echo "bench: $n idle streams failed"
		IDLES="$IDLES $n:failed"
		FAILED=1
	fi
done
stop_daemon
stop_mock

echo
echo "== summary ($(nproc) CPUs shared, $SECS s per run)"
printf '%-44s %10s %8s %8s %8s\n' "run" "per s" "p50 ms" "p99 ms" "max ms"
row() { # NAME LINE
	printf '%-44s %10s %8.2f %8.2f %8.2f\n' "$1" "$(kv "$2" rate)" \
	    "$(kv "$2" p50_us)e-3" "$(kv "$2" p99_us)e-3" \
	    "$(kv "$2" max_us)e-3"
}
row "apnse client, 1 connection (target 100k)" "$AB1"
row "apnse client, 4 connections (target 100k)" "$AB4"
row "e2e saturation, 4 streams (target 30k)" "$SAT"
row "e2e saturation, 64 streams" "$SAT64"
row "e2e at 5,000/s, 16 streams (p99 < 5 ms)" "$FIX"
row "e2e at 5,000/s, generator quick-ACKs" "$FIXQ"
echo
printf '%-24s %7s %7s %7s %7s %7s %7s %6s %8s\n' "CPU % (RSS KiB)" parent \
    xmppe apnse logd mock loadgen idle "us/push"
cpu() { # NAME LINE
	printf '%-24s' "$1"
	for p in parent xmppe apnse logd mock loadgen; do
		printf ' %7s' "$(kv "$2" cpu_$p)"
	done
	# CPU microseconds per push: the daemon's four processes
	us=$(echo "$2" | tr ' ' '\n' | awk -F= -v r="$(kv "$2" rate)" '
	    /^cpu_(parent|xmppe|apnse|logd)=/ { sub("%", "", $2); t += $2 }
	    END { if (r > 0) printf "%.0f", t * 1e4 / r }')
	printf ' %6s %8s\n' "$(kv "$2" machine_idle)" "$us"
	printf '%-24s' ""
	for p in parent xmppe apnse logd mock; do
		printf ' %7s' "$(kv "$2" rss_$p)"
	done
	printf '\n'
}
cpu "saturation, 4 streams" "$SAT"
cpu "saturation, 64 streams" "$SAT64"
cpu "5,000/s" "$FIX"
echo "(idle: the whole machine's idle share during the run; us/push: CPU"
echo "time of parent, xmppe, apnse and logd per push answered)"
echo
for i in $IDLES; do
	echo "idle streams ${i%%:*}: xmppe grows ${i#*:} bytes per stream"
done
if [ "$FAILED" != 0 ]; then
	echo "bench: a run failed or saw error replies (see above)"
	exit 1
fi
