#!/bin/sh
# Makes a throw-away test CA and certificates with openssl, P-256 keys
# throughout so that it is quick.
#
# usage: sh regress/ca.sh [-s] DIR [NAME ...]
#
# In DIR: ca.pem, ca.key; for each NAME, NAME.pem and NAME.key signed by
# the CA with subjectAltName DNS:NAME (plus IP:127.0.0.1 for 127.0.0.1
# and localhost) and the serverAuth and clientAuth EKUs, or serverAuth
# only with -s; jwt.key (P-256 in PKCS#8 PEM, like Apple's .p8) and
# jwt.pub.  Keys are mode 0600.
set -e

eku="serverAuth,clientAuth"
while getopts s opt; do
	case $opt in
	s)	eku="serverAuth" ;;
	*)	echo "usage: sh regress/ca.sh [-s] DIR [NAME ...]" >&2; exit 1 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -lt 1 ]; then
	echo "usage: sh regress/ca.sh [-s] DIR [NAME ...]" >&2
	exit 1
fi
dir=$1
shift
mkdir -p "$dir"
umask 077
days=3650
curve="-newkey ec -pkeyopt ec_paramgen_curve:P-256"

openssl req -x509 -new $curve -nodes -keyout "$dir/ca.key" \
    -out "$dir/ca.pem" -days $days -subj "/CN=monalpushd test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

for name in "$@"; do
	case $name in
	127.0.0.1|localhost)	san="DNS:$name,IP:127.0.0.1" ;;
	*)			san="DNS:$name" ;;
	esac
	ext="$dir/$name.ext"
	cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$eku
subjectAltName=$san
EOF
	openssl req -new $curve -nodes -keyout "$dir/$name.key" \
	    -subj "/CN=$name" 2>/dev/null |
	openssl x509 -req -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
	    -set_serial "0x$(openssl rand -hex 8)" -days $days \
	    -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
	rm -f "$ext"
done

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$dir/jwt.key" 2>/dev/null
openssl pkey -in "$dir/jwt.key" -pubout -out "$dir/jwt.pub" 2>/dev/null

chmod 600 "$dir"/*.key
chmod 644 "$dir"/*.pem "$dir/jwt.pub"
