#!/bin/sh
# The process house: four processes with their titles, each child's
# confinement as the kernel reports it, the sandbox refusing forbidden
# acts, shutdown on SIGTERM, and a whole-daemon exit within a second
# when any child dies, with no process left behind.
. "$(dirname "$0")/lib.sh"
need_root "process tests"

d=$(conf_base main)
start_daemon "$d" || { fail "daemon starts"; finish; }
pass "daemon starts"

uid=$(id -u _monalpush)
gid=$(id -g _monalpush)
for name in xmppe apnse logd; do
	pid=$(child_pid "$DPID" "$name")
	if [ -z "$pid" ]; then
		fail "$name runs with its process title"
		continue
	fi
	pass "$name runs with its process title"
	st=/proc/$pid/status
	check "$name uid is _monalpush" \
	    grep -Eq "^Uid:[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid" $st
	check "$name gid is _monalpush" \
	    grep -Eq "^Gid:[[:space:]]+$gid[[:space:]]+$gid[[:space:]]+$gid" $st
	check "$name has no supplementary groups" \
	    grep -Eq "^Groups:[[:space:]]*$gid?[[:space:]]*$" $st
	check "$name is in seccomp filter mode" grep -q "^Seccomp:[[:space:]]2" $st
	check "$name has no_new_privs" grep -q "^NoNewPrivs:[[:space:]]1" $st
	root=$(readlink /proc/$pid/root)
	if [ $name = logd ]; then want=$d/log; else want=/var/empty; fi
	check "$name is chrooted to $want (is $root)" [ "$root" = "$want" ]
	# The test build tries the forbidden acts on SIGUSR1 and logs them.
	kill -USR1 "$pid"
	wait_for "$d/stderr" "^$name info: test: uid" || true
	check "$name: open /etc/passwd denied" \
	    grep -q "^$name info: test: open /etc/passwd: denied" "$d/stderr"
	if [ $name != logd ]; then
		check "$name: open / denied by Landlock" \
		    grep -q "^$name info: test: open /: denied: Permission" "$d/stderr"
	else
		check "logd: may create files in its directory" \
		    grep -q "^logd info: test: create in log directory: allowed" "$d/stderr"
		check "logd: socket AF_INET denied" \
		    grep -q "^logd info: test: socket AF_INET: denied" "$d/stderr"
	fi
	for fam in AF_UNIX AF_NETLINK AF_PACKET; do
		check "$name: socket $fam denied" \
		    grep -q "^$name info: test: socket $fam: denied" "$d/stderr"
	done
done

# Show status lists the four processes.
out=$("$CTL" -s "$d/sock" show status 2>&1)
for name in parent xmppe apnse logd; do
	check "show status lists $name" sh -c "echo \"\$1\" | grep -qw $name" x "$out"
done

# Orderly shutdown.
kill -TERM "$DPID"
wait "$DPID"
rc=$?
check "SIGTERM: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "SIGTERM: control socket removed" [ ! -e "$d/sock" ]
check "SIGTERM: shutdown logged" grep -q "shutting down" "$d/log"/monalpush-*.log

# execve kills the child (seccomp), which takes the daemon down.
# kill -9 of every child likewise: non-zero within a second, no orphans.
for what in execve:xmppe kill:xmppe kill:apnse kill:logd execve:apnse; do
	act=${what%%:*}
	name=${what#*:}
	d=$(conf_base "$act-$name")
	start_daemon "$d" || { fail "$what: daemon starts"; continue; }
	kids=$(pgrep -P "$DPID" | tr '\n' ' ')
	pid=$(child_pid "$DPID" "$name")
	if [ $act = execve ]; then
		kill -USR2 "$pid"
	else
		kill -KILL "$pid"
	fi
	if wait_gone "$DPID" 10; then
		pass "$what: daemon gone within a second"
	else
		fail "$what: daemon gone within a second"
		kill -KILL "$DPID"
	fi
	wait "$DPID"
	rc=$?
	check "$what: exit status non-zero (got $rc)" [ "$rc" -ne 0 ]
	left=""
	for k in $kids; do
		kill -0 "$k" 2>/dev/null && left="$left $k"
	done
	check "$what: no process left behind ($left)" [ -z "$left" ]
	if [ $act = execve ]; then
		check "$what: the kernel killed it with SIGSYS" \
		    grep -q "$name killed by signal 31" "$d/stderr"
	else
		check "$what: the parent logged the death" \
		    grep -q "$name killed by signal 9" "$d/stderr"
	fi
done
finish
