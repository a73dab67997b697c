#!/bin/sh
# Installs what monalpushd needs to build and to run its tests.  On
# Debian, as root, the missing packages are installed with apt-get;
# elsewhere the list is printed.  Also creates the _monalpush user and
# /var/empty when run as root.  Quiet when there is nothing to do.

BUILD="gcc make pkg-config byacc libevent-dev libtls-dev libnghttp2-dev
libdb5.3-dev libexpat1-dev libunbound-dev libbsd-dev libssl-dev"
TOOLS="mandoc openssl curl iproute2 procps psmisc db5.3-util valgrind"
INTEROP="prosody prosody-modules lua-unbound dnsmasq python3-slixmpp"
PKGS="$BUILD $TOOLS $INTEROP"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
	for p in $PKGS; do
		s=$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null)
		[ "$s" = installed ] || missing="$missing $p"
	done
fi

if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then
		echo "setup: installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null || exit 1
		# Prosody is a peer in the tests, not a service of this host.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		apt-get install -y -qq --no-install-recommends $missing \
		    >/tmp/monalpushd-setup.log 2>&1
		rc=$?
		rm -f /usr/sbin/policy-rc.d
		if [ $rc -ne 0 ]; then
			tail -20 /tmp/monalpushd-setup.log
			echo "setup: apt-get failed" >&2
			exit 1
		fi
	else
		echo "setup: missing packages:$missing" >&2
		echo "setup: on Debian 12 run as root: apt-get install$missing" >&2
		echo "setup: elsewhere install libevent, libtls (LibreSSL or" \
		    "libretls), nghttp2, Berkeley DB 5.3, expat, libunbound," \
		    "libbsd, OpenSSL's libcrypto, byacc and mandoc" >&2
		exit 1
	fi
fi

if [ "$(id -u)" = 0 ]; then
	sh "$(dirname "$0")/adduser.sh" || exit 1
fi
exit 0
