#!/bin/sh
# make install honours DESTDIR and PREFIX, installs the binaries, the
# three man pages (mandoc -Tlint clean) and the example configuration.
. "$(dirname "$0")/lib.sh"
make -C "$TOP" -s install DESTDIR="$T/stage" PREFIX=/opt/mp >"$T/out" 2>&1
check "make install DESTDIR=... PREFIX=/opt/mp" [ $? -eq 0 ]
for f in sbin/monalpushd sbin/monalpushctl; do
	check "$f installed and executable" [ -x "$T/stage/opt/mp/$f" ]
done
for f in man8/monalpushd.8 man8/monalpushctl.8 man5/monalpush.conf.5; do
	check "$f installed" [ -f "$T/stage/opt/mp/share/man/$f" ]
	out=$(mandoc -Tlint -Wwarning "$T/stage/opt/mp/share/man/$f" 2>&1)
	check "$f is mandoc -Tlint clean" [ -z "$out" ]
done
check "example configuration installed" \
    [ -f "$T/stage/opt/mp/share/examples/monalpushd/monalpush.conf" ]
check "nothing installed outside DESTDIR/PREFIX" \
    [ "$(find "$T/stage" -type f | grep -vc "^$T/stage/opt/mp/")" -eq 0 ]
"$T/stage/opt/mp/sbin/monalpushd" -f /nonexistent -n >"$T/out" 2>&1
check "the installed daemon runs (and reports a missing file)" \
    grep -q /nonexistent "$T/out"
finish
