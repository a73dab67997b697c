#!/bin/sh
# The s2s stream layer end to end: the test daemon against a scripted
# peer.  STARTTLS + SASL EXTERNAL, dialback in both roles, bidi, direct
# TLS, the stream errors of PROTOCOL.md section 2, the handshake timeout.
. "$(dirname "$0")/lib.sh"
need_root "s2s process tests"
[ -n "${S2S_DAEMON:-}" ] && DAEMON=$S2S_DAEMON
if ! grep -q s2s_init "$DAEMON" 2>/dev/null; then
	skip "s2s: $DAEMON does not run the s2s layer yet"
	exit 0
fi

# The scripted peer: an originating stream, and a listener that plays
# the authoritative and receiving server for the daemon's streams back.
PEER=${S2S_PEER:-$T/peer.py}
[ -n "${S2S_PEER:-}" ] || cat >"$PEER" <<'PEEREOF'
#!/usr/bin/env python3
# A minimal scripted s2s peer for t_s2s.sh: originating side on one
# stream, optional listener that plays the authoritative and receiving
# side for the daemon's own outbound streams.  Prints what it receives
# as "main: ..." and "listen: ..." lines.
import argparse, re, socket, ssl, sys, threading, time

NS = ("xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
      "xmlns:db='jabber:server:dialback'")

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--frm", default="peer.localhost")
ap.add_argument("--to", default="push.localhost")
ap.add_argument("--ca")
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--tls", default="starttls")  # starttls, direct, none, stall
ap.add_argument("--auth", default="external")  # external, dialback, none
ap.add_argument("--bidi", action="store_true")
ap.add_argument("--listen", type=int, default=0)
ap.add_argument("--listen-external", action="store_true")
ap.add_argument("--pre", action="append", default=[])   # raw, before auth
ap.add_argument("--send", action="append", default=[])  # raw, after auth
ap.add_argument("--raw", default="")  # sent instead of the whole dialogue
ap.add_argument("--expect", default="")  # regex over all output
ap.add_argument("--wait", type=float, default=5)
a = ap.parse_args()

out_lock = threading.Lock()
seen = []
done = threading.Event()


def emit(tag, data):
    with out_lock:
        seen.append("%s: %s\n" % (tag, data))
        print("%s: %s" % (tag, data), flush=True)
        if a.expect and re.search(a.expect, "".join(seen), re.S):
            done.set()


class Stream:
    def __init__(self, sock, tag):
        self.s = sock
        self.buf = ""
        self.tag = tag

    def send(self, x):
        self.s.sendall(x.encode())

    def read_until(self, pat, timeout=5):
        end = time.time() + timeout
        while True:
            m = re.search(pat, self.buf, re.S)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = end - time.time()
            if left <= 0:
                raise TimeoutError(pat)
            if done.is_set():
                raise StopIteration(pat)
            self.s.settimeout(min(left, 0.1))
            try:
                d = self.s.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            if not d:
                raise EOFError(pat)
            t = d.decode(errors="replace")
            emit(self.tag, t)
            self.buf += t


def client_ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    if a.cert:
        c.load_cert_chain(a.cert, a.key)
    if a.tls == "direct":
        c.set_alpn_protocols(["xmpp-server"])
    return c


def header(st, frm, to, id_=None):
    st.send("<?xml version='1.0'?><stream:stream %s from='%s' to='%s'%s "
            "version='1.0'>" % (NS, frm, to,
                                " id='%s'" % id_ if id_ else ""))


def listener():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(8)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def verify_back(orig, recv, sid, key):
    st = Stream(socket.create_connection(("127.0.0.1", a.port)), "back")
    try:
        header(st, recv, orig)
        st.read_until(r"</stream:features>")
        st.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        st.read_until(r"<proceed[^>]*/>")
        st.s = client_ctx().wrap_socket(st.s, server_hostname=orig)
        st.buf = ""
        header(st, recv, orig)
        st.read_until(r"</stream:features>")
        st.send("<db:verify from='%s' to='%s' id='%s'>%s</db:verify>"
                % (recv, orig, sid, key))
        m = st.read_until(r"<db:verify[^>]*type='([a-z]*)'")
        st.send("</stream:stream>")
        return m.group(1)
    except Exception as e:
        emit("back", "END %s" % type(e).__name__)
        return "invalid"


def serve(c):
    st = Stream(c, "listen")
    try:
        st.read_until(r"<stream:stream[^>]*>")
        header(st, a.frm, a.to, "lsid1")
        st.send("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
                "xmpp-tls'/><dialback xmlns='urn:xmpp:features:dialback'/>"
                "</stream:features>")
        st.read_until(r"<starttls[^>]*/>")
        st.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        sc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sc.load_cert_chain(a.cert, a.key)
        if a.listen_external:
            sc.load_verify_locations(a.ca)
            sc.verify_mode = ssl.CERT_OPTIONAL
        st.s = sc.wrap_socket(c, server_side=True)
        st.buf = ""
        st.read_until(r"<stream:stream[^>]*>")
        header(st, a.frm, a.to, "lsid2")
        if a.listen_external and st.s.getpeercert():
            st.send("<stream:features><mechanisms xmlns='urn:ietf:params:"
                    "xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism>"
                    "</mechanisms></stream:features>")
            st.read_until(r"<auth[^>]*EXTERNAL[^>]*>[^<]*</auth>")
            emit("listen", "PEERCERT %s" % (st.s.getpeercert()
                                            .get("subjectAltName"),))
            st.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            st.buf = ""
            st.read_until(r"<stream:stream[^>]*>")
            header(st, a.frm, a.to, "lsid3")
            st.send("<stream:features/>")
        else:
            st.send("<stream:features><dialback xmlns='urn:xmpp:features:"
                    "dialback'><errors/></dialback></stream:features>")
        while True:
            m = st.read_until(r"<db:(verify|result)([^>]*)>([^<]*)</db:\1>")
            kind, attrs = m.group(1), m.group(2)
            frm = re.search(r"from='([^']*)'", attrs).group(1)
            to = re.search(r"to='([^']*)'", attrs).group(1)
            if kind == "verify":
                id_ = re.search(r"id='([^']*)'", attrs).group(1)
                st.send("<db:verify from='%s' to='%s' id='%s' type='%s'/>"
                        % (to, frm, id_,
                           "valid" if m.group(3) == "goodkey" else
                           "invalid"))
            else:
                # ask the daemon, as its authoritative server, whether
                # the key it gave us is its own
                t = verify_back(frm, to, "lsid2", m.group(3))
                st.send("<db:result from='%s' to='%s' type='%s'/>"
                        % (to, frm, t))
    except Exception as e:
        emit("listen", "END %s" % type(e).__name__)


def main():
    if a.listen:
        threading.Thread(target=listener, daemon=True).start()
    s = socket.create_connection(("127.0.0.1", a.port))
    st = Stream(s, "main")
    try:
        if a.raw:
            st.send(a.raw)
            st.read_until(r"NEVER", a.wait)
        if a.tls == "direct":
            st.s = client_ctx().wrap_socket(s, server_hostname=a.to)
            emit("main", "TLS %s ALPN %s" % (st.s.version(),
                                              st.s.selected_alpn_protocol()))
        elif a.tls == "stall":
            # a TLS ClientHello that never comes: just wait
            header(st, a.frm, a.to)
            st.read_until(r"</stream:features>")
            st.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            st.read_until(r"<proceed[^>]*/>")
            st.read_until(r"NEVER", a.wait)
        header(st, a.frm, a.to)
        st.read_until(r"</stream:features>|<stream:features/>")
        if a.tls == "starttls":
            for p in a.pre:
                if p.startswith("PRETLS:"):
                    st.send(p[7:])
                    st.read_until(r"NEVER", a.wait)
            st.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            st.read_until(r"<proceed[^>]*/>")
            st.s = client_ctx().wrap_socket(s, server_hostname=a.to)
            st.buf = ""
            emit("main", "TLS %s" % st.s.version())
            header(st, a.frm, a.to)
            st.read_until(r"</stream:features>")
        for p in a.pre:
            if not p.startswith("PRETLS:"):
                st.send(p)
        if a.bidi:
            st.send("<bidi xmlns='urn:xmpp:bidi'/>")
        if a.auth == "external":
            st.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                    "mechanism='EXTERNAL'>=</auth>")
            st.read_until(r"<success[^>]*/>")
            header(st, a.frm, a.to)
            st.read_until(r"</stream:features>|<stream:features/>")
        elif a.auth == "dialback":
            st.send("<db:result from='%s' to='%s'>goodkey</db:result>"
                    % (a.frm, a.to))
            st.read_until(r"<db:result[^>]*type='valid'[^>]*/>", a.wait)
            emit("main", "AUTHENTICATED")
        for x in a.send:
            st.send(x)
        st.read_until(r"NEVER", a.wait)
    except Exception as e:
        emit("main", "END %s" % type(e).__name__)
    if a.expect:
        done.wait(a.wait)
    print("matched" if done.is_set() else "not matched", flush=True)


main()
PEEREOF

certs "$T" push.localhost peer.localhost
[ -n "${S2S_KEEP:-}" ] && trap 'cleanup_keep' EXIT
cleanup_keep() { rm -rf /tmp/s2s-last; cp -r "$T" /tmp/s2s-last; cleanup; }
sh "$TOP/regress/ca.sh" -s "$T/s" srvonly.localhost >/dev/null 2>&1
cat "$T/ca.pem" "$T/s/ca.pem" >"$T/bundle.pem"
d=$(conf_base s2s)
port=$(sed -n 's/^listen on 127.0.0.1 port //p' "$d/monalpush.conf")
tport=$(free_port)
lport=$(free_port)
cat >>"$d/monalpush.conf" <<CONF
listen on 127.0.0.1 port $tport tls
ca file "$T/bundle.pem"
starttls required
handshake timeout 1
route "peer.localhost" to 127.0.0.1 port $lport
route "srvonly.localhost" to 127.0.0.1 port 1
CONF
start_daemon "$d" -v || { fail "daemon starts"; finish; }
pass "daemon starts"
wait_for "$d/stderr" "listening on 127.0.0.1 port $tport" 50 ||
    fail "xmppe listens"

n=0
peer() { # peer NAME args...: runs the peer, output in $T/NAME.out
	name=$1; shift
	/usr/bin/python3 "$PEER" --port "$port" --ca "$T/ca.pem" \
	    --cert "$T/peer.localhost.pem" --key "$T/peer.localhost.key" \
	    "$@" >"$T/$name.out" 2>&1
}
has() { grep -q -- "$2" "$T/$1.out"; }
disco="<iq type='get' id='d1' from='peer.localhost' to='push.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
serr() { echo "<stream:error><$1 xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"; }

# STARTTLS + EXTERNAL; the reply needs our own stream back (route).
peer ext --auth external --listen "$lport" --send "$disco" \
    --expect "listen: .*id='d1'" --wait 5
check "starttls: TLS 1.2 or 1.3" has ext "main: TLS TLSv1.[23]"
check "features after TLS offer EXTERNAL and dialback" \
    has ext "<mechanism>EXTERNAL</mechanism>.*urn:xmpp:features:dialback"
check "EXTERNAL: success" has ext "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
check "non-bidi reply comes over our own stream" has ext "^matched"
check "log: peer authenticated (external)" \
    grep -q "peer.localhost authenticated for push.localhost (external" "$d/stderr"
check "disco#info answered with the pubsub/push identity" \
    has ext "listen: <iq type='result' from='push.localhost' to='peer.localhost' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'><identity category='pubsub' type='push'"
check "log: IQ reached appserver" \
    grep -q "iq from peer.localhost to push.localhost" "$d/stderr"

# Our own stream back authenticates with EXTERNAL when offered.
peer extout --auth external --listen "$lport" --listen-external \
    --send "$disco" --expect "listen: <iq[^>]*id='d1'" --wait 5
check "outbound: SASL EXTERNAL with our certificate" \
    has extout "listen: PEERCERT (('DNS', 'push.localhost'),)"
check "outbound EXTERNAL: reply delivered" has extout "^matched"
check "log: outbound authenticated (external)" \
    grep -q "s2s out push.localhost -> peer.localhost: .*authenticated (external" "$d/stderr"

# SASL EXTERNAL with an authzid: ours is fine, another is refused.
sasl="<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
peer authz --auth none --send "$sasl$(printf peer.localhost | base64)</auth>" \
    --expect "<success" --wait 3
check "EXTERNAL with our authzid: success" has authz "^matched"
peer authz2 --auth none --send "$sasl$(printf evil.localhost | base64)</auth>" \
    --expect "<failure" --wait 3
check "EXTERNAL with another authzid: invalid-authzid" \
    has authz2 "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-authzid/></failure>"
peer authz3 --auth none --send "$sasl$(printf 'peer.localhost\0x' | base64)</auth>" \
    --expect "<failure" --wait 3
check "EXTERNAL with a NUL in the authzid: refused" has authz3 "<failure"

# serverAuth-only client certificate: EXTERNAL offered all the same.
/usr/bin/python3 "$PEER" --port "$port" --frm srvonly.localhost \
    --cert "$T/s/srvonly.localhost.pem" --key "$T/s/srvonly.localhost.key" \
    --auth external --expect "<success" --wait 3 >"$T/srv.out" 2>&1
check "serverAuth-only certificate: EXTERNAL succeeds" has srv "<success"

# Dialback: we are the receiving server (verify with the peer's
# authoritative listener) and the authoritative one (our own stream
# back authenticates with dialback? EXTERNAL first: the listener does
# not offer SASL, so dialback).
peer db --cert "$T/s/srvonly.localhost.pem" --key "$T/s/srvonly.localhost.key" \
    --auth dialback --listen "$lport" --send "$disco" \
    --expect "listen: .*id='d1'" --wait 5
check "dialback: db:verify sent to the authoritative server" \
    has db "listen: .*<db:verify from='push.localhost' to='peer.localhost' id="
check "dialback: db:result valid" has db "AUTHENTICATED"
check "dialback: our own stream authenticates with db:result" \
    has db "listen: .*<db:result from='push.localhost' to='peer.localhost'>"
check "authoritative: the key of our own db:result verifies" \
    has db "back: .*<db:verify from='push.localhost' to='peer.localhost' id='lsid2' type='valid'/>"
check "dialback: reply over our stream" has db "^matched"

# Bidi: the reply comes back on the same stream.
peer bidi --auth dialback --bidi --listen "$lport" --send "$disco" \
    --expect "main: .*id='d1'" --wait 5
check "bidi offered" has bidi "urn:xmpp:features:bidi"
check "bidi: reply on the same stream" has bidi "^matched"

# Direct TLS (XEP-0368) with ALPN xmpp-server.
peer direct --port "$tport" --tls direct --auth external \
    --expect "<success" --wait 3
check "direct TLS: ALPN xmpp-server" has direct "main: TLS TLSv1.[23] ALPN xmpp-server"
check "direct TLS: EXTERNAL" has direct "<success"

# Stream errors.
peer from --auth external --send "<message from='evil.localhost' to='push.localhost'/>" --wait 3
check "from not authenticated: invalid-from" has from "$(serr invalid-from)"
peer to --auth external --send "<message from='peer.localhost' to='other.localhost'/>" --wait 3
check "to not ours: host-unknown" has to "$(serr host-unknown)"
peer noauth --auth none --send "$disco" --wait 3
check "stanza before auth: not-authorized" has noauth "$(serr not-authorized)"
peer addr --auth external --send "<message from='peer.localhost'/>" --wait 3
check "missing to: improper-addressing" has addr "$(serr improper-addressing)"
big=$(head -c 70000 /dev/zero | tr '\0' a)
peer big --auth external --send "<message from='peer.localhost' to='push.localhost'><body>$big</body></message>" --wait 3
check "oversized stanza: policy-violation" has big "$(serr policy-violation)"
hdr="<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='push.localhost' version='1.0'>"
peer dtd --raw "<?xml version='1.0'?><!DOCTYPE stream:stream>$hdr" --wait 3
check "DOCTYPE: restricted-xml" has dtd "$(serr restricted-xml)"
peer ent --raw "<?xml version='1.0'?><!DOCTYPE s [<!ENTITY x 'y'>]>$hdr" --wait 3
check "internal entity: restricted-xml" has ent "$(serr restricted-xml)"
peer lol --raw "<?xml version='1.0'?><!DOCTYPE l [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]>$hdr<message>&c;</message>" --wait 3
check "billion laughs: restricted-xml" has lol "$(serr restricted-xml)"
peer undef --auth external --send "<message from='peer.localhost' to='push.localhost'><body>&xx;</body></message>" --wait 3
check "undefined entity: not-well-formed" has undef "$(serr not-well-formed)"
peer bad --auth external --send "<message from='peer.localhost' to='push.localhost'><a></b></message>" --wait 3
check "malformed XML: not-well-formed" has bad "$(serr not-well-formed)"
deep=""; for i in $(seq 40); do deep="$deep<x>"; done
peer deep --auth external --send "<message from='peer.localhost' to='push.localhost'>$deep" --wait 3
check "deep nesting: policy-violation" has deep "$(serr policy-violation)"
peer pi --auth external --send "<?pi x?>" --wait 3
check "processing instruction: restricted-xml" has pi "$(serr restricted-xml)"
peer cli --auth external --send "<message xmlns='jabber:client' from='peer.localhost' to='push.localhost'/>" --wait 3
check "jabber:client stanza: invalid-namespace" has cli "$(serr invalid-namespace)"
peer pretls --tls starttls --auth none --pre "PRETLS:<db:result from='peer.localhost' to='push.localhost'>k</db:result>" --wait 3
check "dialback before required TLS: policy-violation" has pretls "$(serr policy-violation)"
peer badkey --auth none --send "<db:result from='peer.localhost' to='push.localhost'>badkey</db:result>" \
    --listen "$lport" --expect "main: .*type='invalid'" --wait 5
check "dialback with a wrong key: invalid, stream stays" has badkey "^matched"
peer unk --auth none --send "<db:result from='peer.localhost' to='nowhere.localhost'>k</db:result>" --wait 3
check "dialback to an unknown domain: item-not-found error" \
    has unk "type='error'><error type='cancel'><item-not-found"

# Authoritative role: a db:verify with a key we never issued.
peer verify --auth none --send "<db:verify from='peer.localhost' to='push.localhost' id='x1'>0000</db:verify>" --wait 3
check "authoritative: unknown key invalid" \
    has verify "<db:verify from='push.localhost' to='peer.localhost' id='x1' type='invalid'/>"

# A peer that stops inside TLS is dropped after the handshake timeout.
start=$(date +%s)
peer stall --tls stall --auth none --wait 4
check "stalled TLS handshake dropped within the timeout" has stall "END EOFError"
check "stalled TLS: dropped in time" [ $(( $(date +%s) - start )) -le 4 ]

# Bounds: connections per peer address, idle streams.
d2=$(conf_base s2slim)
port2=$(sed -n 's/^listen on 127.0.0.1 port //p' "$d2/monalpush.conf")
cat >>"$d2/monalpush.conf" <<CONF
ca file "$T/bundle.pem"
max connections per peer 2
idle timeout 1
CONF
DPID1=$DPID
if start_daemon "$d2" -v; then
	wait_for "$d2/stderr" "listening on 127.0.0.1 port $port2" 50
	/usr/bin/python3 - "$port2" >"$T/lim.out" 2>&1 <<'PY'
import socket, sys
p = int(sys.argv[1])
s = [socket.create_connection(("127.0.0.1", p)) for i in range(3)]
s[2].settimeout(3)
print("third:", "closed" if s[2].recv(1) == b"" else "open")
s[0].settimeout(0.5)
try:
    s[0].recv(1)
    print("first: data")
except socket.timeout:
    print("first: open")
PY
	check "third connection from one address refused" grep -q "third: closed" "$T/lim.out"
	check "the first two stay" grep -q "first: open" "$T/lim.out"
	/usr/bin/python3 "$PEER" --port "$port2" --ca "$T/ca.pem" \
	    --cert "$T/peer.localhost.pem" --key "$T/peer.localhost.key" \
	    --auth external --expect "main: </stream:stream>" --wait 4 \
	    >"$T/idle.out" 2>&1
	check "idle stream closed after the idle timeout" has idle "^matched"
else
	fail "second daemon starts"
fi
DPID=$DPID1

# Still serving.
peer last --auth external --expect "<success" --wait 3
check "daemon still serves the next peer" has last "<success"
xp=$(child_pid "$DPID" xmppe)
check "xmppe still runs" [ -n "$xp" ]
# Interoperability with the team's scripted peer, when it is there.
SP=$TOP/regress/s2speer.py
if [ -f "$SP" ]; then
	/usr/bin/python3 "$SP" connect --port "$port" --to push.localhost \
	    --from peer.localhost --cert "$T/peer.localhost.pem" \
	    --key "$T/peer.localhost.key" --cafile "$T/ca.pem" \
	    --auth dialback --listen-port "$lport" disco-info \
	    >"$T/sp.out" 2>&1
	check "s2speer: dialback, reply over our EXTERNAL stream back" \
	    grep -q "urn:xmpp:push:0" "$T/sp.out"
	/usr/bin/python3 "$SP" connect --port "$port" --to push.localhost \
	    --from peer.localhost --cert "$T/peer.localhost.pem" \
	    --key "$T/peer.localhost.key" --cafile "$T/ca.pem" \
	    --auth external --bidi ping >"$T/sp2.out" 2>&1
	check "s2speer: EXTERNAL, bidi, ping" \
	    grep -q '"bidi": true' "$T/sp2.out"
	for p in billion-laughs internal-subset comment; do
		/usr/bin/python3 "$SP" raw --port "$port" --to push.localhost \
		    --from peer.localhost --tls none --stage tcp \
		    --payload $p --wait 3 >"$T/sp-$p.out" 2>&1
		check "s2speer: $p: restricted-xml" \
		    grep -q "restricted-xml" "$T/sp-$p.out"
	done
fi

# SIGTERM: every open stream gets system-shutdown.
peer down --auth external --expect "system-shutdown" --wait 5 &
ppid=$!
if wait_for "$T/down.out" "<success" 50 && kill -TERM "$DPID"; then
	wait "$ppid"
	check "SIGTERM: system-shutdown to the peer" has down "^matched"
else
	fail "SIGTERM: system-shutdown to the peer"
fi
check "no dialback key in the log" sh -c "! grep -q goodkey '$d/stderr' && ! grep -q goodkey '$d'/log/*"
finish
