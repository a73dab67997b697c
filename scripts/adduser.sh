#!/bin/sh
# Creates the unprivileged user the children run as, and the empty
# directory xmppe and apnse are chrooted to.
USER=${1:-_monalpush}
if ! getent passwd "$USER" >/dev/null; then
	useradd -r -M -d /var/empty -s /usr/sbin/nologin -U "$USER" || exit 1
	echo "adduser: created user $USER"
fi
if [ ! -d /var/empty ]; then
	mkdir -p /var/empty || exit 1
fi
chown root:root /var/empty && chmod 0755 /var/empty
