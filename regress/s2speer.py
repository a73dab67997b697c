#!/usr/bin/python3
"""s2speer: a scripted XMPP server-to-server peer for monalpushd's tests.

Standard library only; run with /usr/bin/python3 (Debian 12's 3.11).

The peer plays the other XMPP server: the ORIGINATING server that opens a
stream to monalpushd and sends it stanzas (registrations, publishes, pings,
malformed input), and the AUTHORITATIVE / RECEIVING server that listens for
monalpushd's own streams (dialback verification, replies without bidi).

Library use (from a test written in Python):

    import sys; sys.path.insert(0, "regress"); import s2speer
    p = s2speer.Peer("example.test", certfile=..., keyfile=..., cafile=...,
                     dialback_secret="s3cret",
                     routes={"push.localhost": ("127.0.0.1", 5269)})
    p.listen(port=0)                 # p.listener.port; needed for dialback
    s = p.connect("127.0.0.1", port, "push.localhost", tls="starttls",
                  auth="dialback", bidi=True, timeout=5)
    r = s.register(node="uuid-1", token="abcd")
    assert r["type"] == "result" and r["secret"]
    r = s.publish(node="uuid-1", secret=r["secret"], body="hi")
    s.close()
    p.close()

Replies come back as dicts: "type" ("result", "error", "timeout"), for
errors "error_type" and "condition" (and "text"), plus per request:
disco-info "identities"/"features", disco-items "items", register
"status"/"sessionid"/"jid"/"node"/"secret", unregister "jid"/"node".
The stanza itself is under "_element" (an ElementTree element whose tags
are "{namespace}name").

Waiting is always bounded.  stream.expect(timeout) returns the next stanza
or raises StreamError (.condition), StreamClosed (</stream:stream> or EOF,
.kind) or Timeout.  stream.poll(timeout) returns an Event instead of
raising.  Without bidi, monalpushd answers over its own stream to our
listener; stream.wait_reply(id) looks at both places.

Command line: see "s2speer.py --help" and "s2speer.py COMMAND --help".
"""

import argparse
import base64
import binascii
import collections
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import sys
import threading
import time
import xml.etree.ElementTree as ET
import xml.parsers.expat
from xml.sax.saxutils import escape, quoteattr

NS_STREAM = "http://etherx.jabber.org/streams"
NS_SERVER = "jabber:server"
NS_DB = "jabber:server:dialback"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_BIDI = "urn:xmpp:bidi"
NS_BIDI_FEATURE = "urn:xmpp:features:bidi"
NS_DB_FEATURE = "urn:xmpp:features:dialback"
NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_PING = "urn:xmpp:ping"
NS_DATA = "jabber:x:data"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUSH = "urn:xmpp:push:0"
FORM_APPSERVER = "https://github.com/tmolitor-stud-tu/mod_push_appserver/"
FORM_REGISTER = FORM_APPSERVER + "#v1-register-push"
FORM_UNREGISTER = FORM_APPSERVER + "#v1-unregister-push"
FORM_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
FORM_SUMMARY = "urn:xmpp:push:summary"
ALPN_XMPP_SERVER = "xmpp-server"

READ_SIZE = 65536
POLL_SLICE = 0.05		# how often waits that watch two places switch
HANDLER_SLICE = 0.2		# how often listener threads look at their outbox
TRACE_MAX = 4096		# bytes of one read or write shown by --trace


class Timeout(TimeoutError):
	pass


class StreamError(Exception):
	"""The other side sent <stream:error/>."""

	def __init__(self, condition, text=None):
		super().__init__("stream error %s%s" % (condition,
		    ": " + text if text else ""))
		self.condition = condition
		self.text = text


class StreamClosed(Exception):
	"""kind: "closed" (</stream:stream>), "eof", or "xml-error"."""

	def __init__(self, kind, text=None):
		super().__init__("%s%s" % (kind, ": " + text if text else ""))
		self.kind = kind
		self.text = text


class NegotiationError(Exception):
	"""Stream set-up failed: step names where, condition what came back."""

	def __init__(self, step, condition, text=None):
		super().__init__("%s failed: %s%s" % (step, condition,
		    " (" + text + ")" if text else ""))
		self.step = step
		self.condition = condition
		self.text = text


class Event:
	"""kind: header, stanza, stream-error, closed, eof, xml-error, timeout;
	listener inbox also: auth, bidi, violation, error."""

	def __init__(self, kind, element=None, condition=None, text=None,
	    stream=None, **extra):
		self.kind = kind
		self.element = element
		self.condition = condition
		self.text = text
		self.stream = stream
		self.extra = extra
		self.time = time.monotonic()

	def to_dict(self):
		d = {"event": self.kind}
		if self.condition is not None:
			d["condition"] = self.condition
		if self.text is not None:
			d["text"] = self.text
		if self.element is not None:
			d["name"] = local_name(self.element.tag)
			for a in ("from", "to", "id", "type"):
				if self.element.get(a) is not None:
					d[a] = self.element.get(a)
			d["xml"] = tostring(self.element)
		d.update(self.extra)
		return d

	def __repr__(self):
		return "Event(%r)" % (self.to_dict(),)


# --- XML helpers ---------------------------------------------------------

def split_tag(tag):
	if tag.startswith("{"):
		ns, _, local = tag[1:].partition("}")
		return ns, local
	return None, tag


def local_name(tag):
	return split_tag(tag)[1]


def tostring(el, parent_ns=NS_SERVER):
	"""Serialises an element for a jabber:server stream: default
	namespace declarations where the namespace changes, the db: and
	stream: prefixes that the stream header declares."""
	ns, local = split_tag(el.tag)
	if ns == NS_DB:
		name, decl, child_ns = "db:" + local, "", parent_ns
	elif ns == NS_STREAM:
		name, decl, child_ns = "stream:" + local, "", parent_ns
	else:
		name, child_ns = local, ns or ""
		decl = "" if child_ns == parent_ns else \
		    " xmlns=" + quoteattr(child_ns)
	out = ["<", name, decl]
	for k, v in el.attrib.items():
		kns, kl = split_tag(k)
		if kns == NS_XML:
			k = "xml:" + kl
		elif kns is not None:
			raise ValueError("namespaced attribute %s" % k)
		out.append(" %s=%s" % (k, quoteattr(v)))
	if len(el) == 0 and not el.text:
		out.append("/>")
	else:
		out.append(">")
		if el.text:
			out.append(escape(el.text))
		for c in el:
			out.append(tostring(c, child_ns))
			if c.tail:
				out.append(escape(c.tail))
		out.append("</%s>" % name)
	return "".join(out)


def parse_xml(text):
	"""Parses a stanza written as in a jabber:server stream (db: and
	stream: prefixes allowed) into an element."""
	wrapped = ("<w xmlns='%s' xmlns:db='%s' xmlns:stream='%s'>%s</w>" %
	    (NS_SERVER, NS_DB, NS_STREAM, text))
	return ET.fromstring(wrapped)[0]


def stream_header(from_=None, to=None, id_=None, version="1.0",
    ns=NS_SERVER, stream_ns=NS_STREAM, xml_decl=True):
	attrs = ""
	if from_:
		attrs += " from=" + quoteattr(from_)
	if to:
		attrs += " to=" + quoteattr(to)
	if id_:
		attrs += " id=" + quoteattr(id_)
	if version:
		attrs += " version=" + quoteattr(version)
	return ("%s<stream:stream xmlns=%s xmlns:stream=%s xmlns:db=%s%s>" %
	    ("<?xml version='1.0'?>" if xml_decl else "", quoteattr(ns),
	    quoteattr(stream_ns), quoteattr(NS_DB), attrs))


def stream_error_xml(condition, text=None):
	t = ""
	if text:
		t = "<text xmlns='%s'>%s</text>" % (NS_STREAM_ERR, escape(text))
	return "<stream:error><%s xmlns='%s'/>%s</stream:error>" % (
	    condition, NS_STREAM_ERR, t)


def domain_of(jid):
	if jid is None:
		return None
	j = jid.split("/", 1)[0]
	return j.split("@", 1)[-1].lower()


def dialback_key(secret, receiving, originating, stream_id):
	"""XEP-0185: HMAC-SHA256 keyed with hex(SHA-256(secret)) over
	"receiving originating streamid", in hex."""
	k = hashlib.sha256(secret.encode()).hexdigest().encode()
	msg = ("%s %s %s" % (receiving, originating, stream_id)).encode()
	return hmac.new(k, msg, hashlib.sha256).hexdigest()


def cert_matches(cert, domain):
	"""True when a getpeercert() dict names domain (SAN dNSName, or the CN
	when there are no SANs; a left-most '*' label matches one label)."""
	if not cert or not domain:
		return False
	domain = domain.lower().rstrip(".")
	names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
	if not names and not cert.get("subjectAltName"):
		for rdn in cert.get("subject", ()):
			names += [v for k, v in rdn if k == "commonName"]
	for n in names:
		n = n.lower().rstrip(".")
		if n == domain:
			return True
		if n.startswith("*.") and "." in domain and \
		    domain.split(".", 1)[1] == n[2:]:
			return True
	return False


def new_id():
	return secrets.token_hex(8)


# --- stanza builders (return XML text) ------------------------------------

def _attrs(**kw):
	return "".join(" %s=%s" % (k.rstrip("_").replace("__", "-"),
	    quoteattr(str(v))) for k, v in kw.items() if v is not None)


def _field(var, value):
	if value is None:
		return "<field var=%s/>" % quoteattr(var)
	return "<field var=%s><value>%s</value></field>" % (quoteattr(var),
	    escape(str(value)))


def data_form(form_type, fields, type_="submit"):
	"""fields: dict or list of (var, value); value None gives an empty
	field."""
	items = fields.items() if isinstance(fields, dict) else fields
	body = "".join(_field(k, v) for k, v in items)
	ft = _field("FORM_TYPE", form_type) if form_type else ""
	return "<x xmlns='%s' type=%s>%s%s</x>" % (NS_DATA, quoteattr(type_),
	    ft, body)


def build_iq(type_, to, payload, from_=None, id_=None):
	return "<iq%s>%s</iq>" % (_attrs(type=type_, from_=from_, to=to,
	    id=id_), payload)


def build_disco_info(to, from_=None, id_=None, node=None):
	q = "<query xmlns='%s'%s/>" % (NS_DISCO_INFO, _attrs(node=node))
	return build_iq("get", to, q, from_, id_)


def build_disco_items(to, from_=None, id_=None, node=NS_COMMANDS):
	q = "<query xmlns='%s'%s/>" % (NS_DISCO_ITEMS, _attrs(node=node))
	return build_iq("get", to, q, from_, id_)


def build_ping(to, from_=None, id_=None):
	return build_iq("get", to, "<ping xmlns='%s'/>" % NS_PING, from_, id_)


def build_command(to, node, fields, form_type, from_=None, id_=None,
    action="execute"):
	form = data_form(form_type, fields) if fields is not None else ""
	c = "<command xmlns='%s'%s>%s</command>" % (NS_COMMANDS,
	    _attrs(node=node, action=action), form)
	return build_iq("set", to, c, from_, id_)


def build_register(to, node, token, type_="apns", from_=None, id_=None,
    extra_fields=None, form_type=FORM_REGISTER):
	f = [("type", type_), ("node", node), ("token", token)]
	f = [(k, v) for k, v in f if v is not None] + list(
	    (extra_fields or {}).items())
	return build_command(to, "v1-register-push", f, form_type, from_, id_)


def build_unregister(to, node, type_="apns", from_=None, id_=None,
    extra_fields=None, form_type=FORM_UNREGISTER):
	f = [("type", type_), ("node", node)]
	f = [(k, v) for k, v in f if v is not None] + list(
	    (extra_fields or {}).items())
	return build_command(to, "v1-unregister-push", f, form_type, from_,
	    id_)


def build_publish(to, node, secret=None, push_module=None, body=None,
    summary=None, from_=None, id_=None, options=None):
	"""XEP-0357 publish.  summary: dict of urn:xmpp:push:summary fields
	(body= adds last-message-body and message-count 1); summary False
	leaves the notification form out.  options: extra publish-options."""
	notif = ""
	if summary is not False:
		s = dict(summary or {})
		if body is not None:
			s.setdefault("message-count", 1)
			s["last-message-body"] = body
		if s:
			notif = data_form(FORM_SUMMARY, s)
	opts = {}
	if secret is not None:
		opts["secret"] = secret
	if push_module is not None:
		opts["pushModule"] = push_module
	opts.update(options or {})
	po = ""
	if opts:
		po = "<publish-options>%s</publish-options>" % data_form(
		    FORM_PUBLISH_OPTIONS, opts)
	p = ("<pubsub xmlns='%s'><publish node=%s><item><notification "
	    "xmlns='%s'>%s</notification></item></publish>%s</pubsub>" %
	    (NS_PUBSUB, quoteattr(node), NS_PUSH, notif, po))
	return build_iq("set", to, p, from_, id_)


def build_message(to, body, from_=None, id_=None, type_="chat"):
	return "<message%s><body>%s</body></message>" % (_attrs(from_=from_,
	    to=to, id=id_, type=type_), escape(body))


# --- reply parsers --------------------------------------------------------

def parse_error(el):
	"""{"error_type", "condition", "text"} of a stanza's <error/>."""
	e = el.find("{%s}error" % NS_SERVER)
	if e is None:
		return {"error_type": None, "condition": None}
	d = {"error_type": e.get("type"), "condition": None}
	for c in e:
		ns, local = split_tag(c.tag)
		if ns == NS_STANZA_ERR and local == "text":
			d["text"] = c.text or ""
		elif ns == NS_STANZA_ERR and d["condition"] is None:
			d["condition"] = local
	return d


def form_values(x):
	"""var -> value (first value) of a jabber:x:data form."""
	d = {}
	if x is None:
		return d
	for f in x.findall("{%s}field" % NS_DATA):
		v = f.find("{%s}value" % NS_DATA)
		d[f.get("var")] = v.text or "" if v is not None else None
	return d


def parse_reply(el):
	"""The dict form of an IQ reply, filled in for the payloads we know."""
	d = {"type": el.get("type"), "id": el.get("id"),
	    "from": el.get("from"), "to": el.get("to"), "_element": el}
	if d["type"] == "error":
		d.update(parse_error(el))
	q = el.find("{%s}query" % NS_DISCO_INFO)
	if q is not None:
		d["identities"] = [{"category": i.get("category"),
		    "type": i.get("type"), "name": i.get("name")}
		    for i in q.findall("{%s}identity" % NS_DISCO_INFO)]
		d["features"] = [f.get("var")
		    for f in q.findall("{%s}feature" % NS_DISCO_INFO)]
	q = el.find("{%s}query" % NS_DISCO_ITEMS)
	if q is not None:
		d["items"] = [{"jid": i.get("jid"), "node": i.get("node"),
		    "name": i.get("name")}
		    for i in q.findall("{%s}item" % NS_DISCO_ITEMS)]
	c = el.find("{%s}command" % NS_COMMANDS)
	if c is not None:
		d["status"] = c.get("status")
		d["sessionid"] = c.get("sessionid")
		d["command"] = c.get("node")
		d.update(form_values(c.find("{%s}x" % NS_DATA)))
	return d


def is_reply(el, iq_id):
	return (el.tag == "{%s}iq" % NS_SERVER and el.get("id") == iq_id and
	    el.get("type") in ("result", "error"))


def public(d):
	"""A reply dict without the keys that do not print as JSON."""
	return {k: v for k, v in d.items() if not k.startswith("_")}


# --- malformed input -------------------------------------------------------

PAYLOADS = {
	"doctype": "DOCTYPE then a stream header (send at stage tcp)",
	"billion-laughs": "DTD with nested entities, header, a message "
	    "using them (stage tcp)",
	"internal-subset": "DTD declaring one harmless entity, header "
	    "(stage tcp)",
	"bad-namespace": "stream header with xmlns='jabber:client' (stage tcp)",
	"bad-stream-namespace": "header with a wrong stream namespace "
	    "(stage tcp)",
	"no-header": "a stanza without a stream header (stage tcp)",
	"entity": "a message using an undefined entity (after the header)",
	"pi": "a processing instruction (after the header)",
	"comment": "an XML comment (after the header)",
	"deep": "a message nested DEPTH levels (default 10000)",
	"oversized": "a message with a SIZE byte body (default 1 MiB)",
	"garbage": "bytes that are not XML",
	"unclosed": "the start of a message that never ends",
	"partial-client-hello": "the first bytes of a TLS ClientHello "
	    "(for a direct TLS port, stage tcp)",
}


def make_payload(name, from_=None, to=None, size=None, depth=None):
	m_attrs = _attrs(from_=from_, to=to, type="chat")
	if name == "doctype":
		return ("<?xml version='1.0'?><!DOCTYPE stream:stream>" +
		    stream_header(from_, to, xml_decl=False)).encode()
	if name == "billion-laughs":
		ents = ["<!ENTITY lol0 'lol'>"]
		for i in range(1, 10):
			ents.append("<!ENTITY lol%d '%s'>" % (i,
			    ("&lol%d;" % (i - 1)) * 10))
		return ("<?xml version='1.0'?><!DOCTYPE stream:stream [%s]>"
		    "%s<message%s><body>&lol9;</body></message>" % ("".join(ents),
		    stream_header(from_, to, xml_decl=False), m_attrs)).encode()
	if name == "internal-subset":
		return ("<?xml version='1.0'?><!DOCTYPE stream:stream "
		    "[<!ENTITY a 'b'>]>" + stream_header(from_, to,
		    xml_decl=False)).encode()
	if name == "bad-namespace":
		return stream_header(from_, to, ns="jabber:client").encode()
	if name == "bad-stream-namespace":
		return stream_header(from_, to,
		    stream_ns="urn:example:wrong").encode()
	if name == "no-header":
		return ("<message%s><body>x</body></message>" % m_attrs).encode()
	if name == "entity":
		return ("<message%s><body>&undefined;</body></message>" %
		    m_attrs).encode()
	if name == "pi":
		return b"<?evil instruction?>"
	if name == "comment":
		return b"<!-- a comment -->"
	if name == "deep":
		n = depth or 10000
		return ("<message%s>%s%s</message>" % (m_attrs, "<a>" * n,
		    "</a>" * n)).encode()
	if name == "oversized":
		n = size or 1024 * 1024
		return ("<message%s><body>%s</body></message>" % (m_attrs,
		    "A" * n)).encode()
	if name == "garbage":
		return b"\x00\xff\xfegarbage<<>>&;\x00"
	if name == "unclosed":
		return ("<message%s><body>never" % m_attrs).encode()
	if name == "partial-client-hello":
		return binascii.unhexlify("160301020001")
	raise ValueError("unknown payload %r (known: %s)" % (name,
	    ", ".join(sorted(PAYLOADS))))


# --- one XML stream over a socket ------------------------------------------

class XMLStream:
	"""Reads a stream into events; all reads are bounded by a timeout."""

	def __init__(self, sock, name="stream", trace=None):
		self.sock = sock
		self.name = name
		self.trace = trace
		self.events = collections.deque()
		self.stash = []
		self.dead = False
		self.broken = False
		self.tls = None
		self.alpn = None
		self.peer_cert = None
		self.wlock = threading.Lock()
		self.reset_parser()

	def _trace(self, d, data):
		if self.trace is None:
			return
		if isinstance(data, bytes):
			data = data.decode("utf-8", "replace")
		if len(data) > TRACE_MAX:
			data = data[:TRACE_MAX] + "...(%d)" % len(data)
		self.trace.write("%s %s %s\n" % (self.name, d, data))
		self.trace.flush()

	def reset_parser(self):
		p = xml.parsers.expat.ParserCreate(namespace_separator="}")
		p.StartElementHandler = self._start
		p.EndElementHandler = self._end
		p.CharacterDataHandler = self._chars
		p.StartNamespaceDeclHandler = self._nsdecl
		p.StartDoctypeDeclHandler = self._forbidden
		p.EntityDeclHandler = self._forbidden
		p.ProcessingInstructionHandler = self._forbidden
		p.CommentHandler = self._forbidden
		p.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
		self.parser = p
		self.depth = 0
		self.stack = []
		self.header = None
		self.header_ns = {}
		self.broken = False

	@staticmethod
	def _name(n):
		return "{" + n if "}" in n else n

	def _forbidden(self, *a):
		raise ValueError("restricted-xml: DTD, PI or comment")

	def _nsdecl(self, prefix, uri):
		if self.depth == 0:
			self.header_ns[prefix or ""] = uri

	def _start(self, name, attrs):
		name = self._name(name)
		attrs = {self._name(k): v for k, v in attrs.items()}
		if self.depth == 0:
			self.header = dict(attrs)
			self.header["tag"] = name
			self.events.append(Event("header", stream=self,
			    **{"header": dict(self.header)}))
		elif self.depth == 1:
			self.stack = [ET.Element(name, attrs)]
		else:
			el = ET.SubElement(self.stack[-1], name, attrs)
			self.stack.append(el)
		self.depth += 1

	def _end(self, name):
		self.depth -= 1
		if self.depth == 0:
			self.events.append(Event("closed", stream=self))
		elif self.depth == 1:
			el = self.stack[0]
			self.stack = []
			if el.tag == "{%s}error" % NS_STREAM:
				cond, text = None, None
				for c in el:
					ns, local = split_tag(c.tag)
					if ns != NS_STREAM_ERR:
						continue
					if local == "text":
						text = c.text
					elif cond is None:
						cond = local
				self.events.append(Event("stream-error",
				    element=el, condition=cond, text=text,
				    stream=self))
			else:
				self.events.append(Event("stanza", element=el,
				    stream=self))
		else:
			self.stack.pop()

	def _chars(self, data):
		if self.depth < 2 or not self.stack:
			return
		cur = self.stack[-1]
		if len(cur):
			cur[-1].tail = (cur[-1].tail or "") + data
		else:
			cur.text = (cur.text or "") + data

	def feed(self, data):
		if self.broken:
			return
		try:
			self.parser.Parse(data, False)
		except (xml.parsers.expat.ExpatError, ValueError) as e:
			self.broken = True
			self.events.append(Event("xml-error", text=str(e),
			    stream=self, data=data[:64].hex()))

	def send_raw(self, data):
		"""Sends bytes (or text) as they are."""
		if isinstance(data, str):
			data = data.encode()
		self._trace(">", data)
		with self.wlock:
			self.sock.sendall(data)

	def send(self, stanza):
		"""Sends an element (serialised) or XML text."""
		if isinstance(stanza, ET.Element):
			stanza = tostring(stanza)
		self.send_raw(stanza)

	def read_once(self, timeout):
		"""One read of at most timeout seconds; False when nothing came."""
		if self.dead:
			return False
		self.sock.settimeout(max(timeout, 0.001))
		try:
			data = self.sock.recv(READ_SIZE)
		except (socket.timeout, ssl.SSLWantReadError):
			return False
		except (OSError, ssl.SSLError) as e:
			self.dead = True
			self.events.append(Event("eof", text=str(e), stream=self))
			return True
		if not data:
			self.dead = True
			self.events.append(Event("eof", stream=self))
			return True
		self._trace("<", data)
		self.feed(data)
		return True

	def intercept(self, ev):
		"""Subclasses answer some stanzas themselves; True consumes."""
		return False

	def poll(self, timeout):
		"""The next event, or Event("timeout") after timeout seconds."""
		deadline = time.monotonic() + timeout
		while True:
			while self.events:
				ev = self.events.popleft()
				if ev.kind == "stanza" and self.intercept(ev):
					continue
				return ev
			if self.dead:
				return Event("eof", stream=self, text="dead")
			rem = deadline - time.monotonic()
			if rem <= 0:
				return Event("timeout", stream=self)
			self.read_once(rem)

	def expect(self, timeout=5):
		"""The next stanza (an element); raises StreamError,
		StreamClosed or Timeout."""
		if self.stash:
			return self.stash.pop(0)
		ev = self.poll(timeout)
		return self._element_or_raise(ev)

	@staticmethod
	def _element_or_raise(ev):
		if ev.kind == "stanza":
			return ev.element
		if ev.kind == "stream-error":
			raise StreamError(ev.condition, ev.text)
		if ev.kind == "timeout":
			raise Timeout("timed out")
		if ev.kind == "header":
			raise StreamClosed("header", "unexpected stream header")
		raise StreamClosed(ev.kind, ev.text)

	def wait_header(self, timeout):
		ev = self.poll(timeout)
		if ev.kind != "header":
			self._element_or_raise(ev)
			raise StreamClosed("header", "stanza before header")
		return ev.extra["header"]

	def expect_tag(self, tags, timeout, step):
		"""The next stanza whose tag is one of tags; others are stashed."""
		deadline = time.monotonic() + timeout
		while True:
			rem = deadline - time.monotonic()
			if rem <= 0:
				raise NegotiationError(step, "timeout")
			ev = self.poll(rem)
			if ev.kind == "timeout":
				raise NegotiationError(step, "timeout")
			if ev.kind == "stream-error":
				raise NegotiationError(step, ev.condition,
				    "stream error" + (": " + ev.text if ev.text
				    else ""))
			if ev.kind != "stanza":
				raise NegotiationError(step, ev.kind, ev.text)
			if ev.element.tag in tags:
				return ev.element
			self.stash.append(ev.element)

	def starttls_client(self, ctx, server_hostname, timeout):
		self.sock.settimeout(timeout)
		self.sock = ctx.wrap_socket(self.sock,
		    server_hostname=server_hostname)
		self._tls_done()

	def starttls_server(self, ctx, timeout):
		self.sock.settimeout(timeout)
		self.sock = ctx.wrap_socket(self.sock, server_side=True)
		self._tls_done()

	def _tls_done(self):
		self.tls = self.sock.version()
		self.alpn = self.sock.selected_alpn_protocol()
		self.peer_cert = self.sock.getpeercert()

	def close(self, timeout=1):
		"""Sends </stream:stream>, waits briefly for the other side's,
		closes the socket."""
		if not self.dead:
			try:
				self.send_raw("</stream:stream>")
				deadline = time.monotonic() + timeout
				while time.monotonic() < deadline:
					ev = self.poll(deadline - time.monotonic())
					if ev.kind in ("closed", "eof", "timeout",
					    "xml-error", "stream-error"):
						break
			except OSError:
				pass
		self.abort()

	def abort(self):
		self.dead = True
		try:
			self.sock.close()
		except OSError:
			pass


# --- the originating side ---------------------------------------------------

STAGES = ("tcp", "header", "proceed", "tls-handshake", "tls", "auth")


class Outgoing(XMLStream):
	"""A stream we open.  After open(): stream_id, features (element),
	tls (version or None), alpn, auth ("external", "dialback", None),
	bidi (True when we asked and it was offered), offered (the SASL
	mechanisms offered before authentication), domains (the
	originating domains authenticated on it)."""

	def __init__(self, peer, sock, from_domain, to_domain, name="out"):
		super().__init__(sock, name, peer.trace if peer else None)
		self.peer = peer
		self.from_domain = from_domain
		self.to_domain = to_domain
		self.stream_id = None
		self.features = None
		self.auth = None
		self.bidi = False
		self.domains = set()
		self.stage = "tcp"
		self.offered = []

	# dialback verification requests on a bidi stream are answered here
	def intercept(self, ev):
		el = ev.element
		if el.tag == "{%s}verify" % NS_DB and el.get("type") is None \
		    and self.peer is not None:
			self.send_raw(self.peer.answer_verify(el))
			return True
		return False

	def _open_stream(self, timeout):
		self.send_raw(stream_header(self.from_domain, self.to_domain))
		h = self.wait_header(timeout)
		self.header_attrs = h
		self.stream_id = h.get("id")
		self.features = self.expect_tag(("{%s}features" % NS_STREAM,),
		    timeout, "features")

	def feature(self, tag):
		if self.features is None:
			return None
		return self.features.find(tag)

	def mechanisms(self):
		m = self.feature("{%s}mechanisms" % NS_SASL)
		if m is None:
			return []
		return [x.text for x in m.findall("{%s}mechanism" % NS_SASL)]

	def negotiate(self, tls="starttls", auth="dialback", bidi=True,
	    timeout=5, stop_at="auth", authzid="domain", db_key=None,
	    server_hostname=None):
		"""See Peer.connect."""
		want = STAGES.index(stop_at)
		sni = server_hostname or self.to_domain
		if tls == "direct":
			if want <= STAGES.index("proceed"):
				return self
			self.starttls_client(self.peer.client_context(
			    alpn=ALPN_XMPP_SERVER), sni, timeout)
			self.stage = "tls-handshake"
			if stop_at == "tls-handshake":
				return self
		elif stop_at == "tcp":
			return self
		self._open_stream(timeout)
		self.stage = "header"
		if stop_at == "header":
			return self
		starttls = self.feature("{%s}starttls" % NS_TLS)
		if tls == "starttls" or (tls == "auto" and starttls is not None):
			if starttls is None:
				raise NegotiationError("starttls", "not-offered")
			self.send_raw("<starttls xmlns='%s'/>" % NS_TLS)
			r = self.expect_tag(("{%s}proceed" % NS_TLS,
			    "{%s}failure" % NS_TLS), timeout, "starttls")
			if r.tag != "{%s}proceed" % NS_TLS:
				raise NegotiationError("starttls", "failure")
			self.stage = "proceed"
			if stop_at == "proceed":
				return self
			self.starttls_client(self.peer.client_context(), sni,
			    timeout)
			self.stage = "tls-handshake"
			if stop_at == "tls-handshake":
				return self
			self.reset_parser()
			self._open_stream(timeout)
		self.stage = "tls"
		if stop_at == "tls":
			return self
		self.offered = self.mechanisms()
		if bidi and self.feature("{%s}bidi" % NS_BIDI_FEATURE) is not None:
			self.send_raw("<bidi xmlns='%s'/>" % NS_BIDI)
			self.bidi = True
		if auth == "external":
			self._external(timeout, authzid)
		elif auth == "dialback":
			self.dialback(self.from_domain, timeout, key=db_key)
		elif auth != "none":
			raise ValueError("auth %r" % auth)
		self.stage = "auth"
		return self

	def _external(self, timeout, authzid):
		if "EXTERNAL" not in self.mechanisms():
			raise NegotiationError("external", "not-offered",
			    "mechanisms: %s" % ",".join(self.mechanisms()))
		if authzid == "domain":
			authzid = self.from_domain
		elif authzid == "empty":
			authzid = ""
		data = base64.b64encode(authzid.encode()).decode() \
		    if authzid else "="
		self.send_raw("<auth xmlns='%s' mechanism='EXTERNAL'>%s</auth>" %
		    (NS_SASL, data))
		r = self.expect_tag(("{%s}success" % NS_SASL,
		    "{%s}failure" % NS_SASL), timeout, "external")
		if r.tag != "{%s}success" % NS_SASL:
			cond = [local_name(c.tag) for c in r]
			raise NegotiationError("external",
			    cond[0] if cond else "failure")
		self.reset_parser()
		self._open_stream(timeout)
		self.auth = "external"
		self.domains.add(self.from_domain)

	def dialback(self, domain, timeout=5, key=None):
		"""Sends <db:result/> for domain (the stream's own or a further
		one, piggybacked) and waits for the verdict; raises
		NegotiationError unless it is valid."""
		if key is None:
			key = dialback_key(self.peer.secret, self.to_domain, domain,
			    self.stream_id)
		self.send_raw("<db:result from=%s to=%s>%s</db:result>" % (
		    quoteattr(domain), quoteattr(self.to_domain), escape(key)))
		deadline = time.monotonic() + timeout
		while True:
			r = self.expect_tag(("{%s}result" % NS_DB,),
			    max(deadline - time.monotonic(), 0), "dialback")
			if r.get("from") == self.to_domain and \
			    r.get("to") == domain:
				break
			self.stash.append(r)
		t = r.get("type")
		if t != "valid":
			cond = None
			for e in r:
				for c in e:
					if split_tag(c.tag)[0] == NS_STANZA_ERR:
						cond = local_name(c.tag)
						break
			raise NegotiationError("dialback", t or "no-type", cond)
		if self.auth is None:
			self.auth = "dialback"
		self.domains.add(domain)

	# -- stanzas --

	def wait_reply(self, iq_id, timeout=5):
		"""The reply (result or error IQ) with that id, from this stream
		or from our listener's streams; raises Timeout, StreamError,
		StreamClosed."""
		deadline = time.monotonic() + timeout
		while True:
			for i, el in enumerate(self.stash):
				if is_reply(el, iq_id):
					return self.stash.pop(i)
			if self.peer is not None and self.peer.listener is not None:
				ev = self.peer.inbox.get(0, lambda e: e.kind ==
				    "stanza" and is_reply(e.element, iq_id))
				if ev is not None:
					return ev.element
			rem = deadline - time.monotonic()
			if rem <= 0:
				raise Timeout("no reply to %s" % iq_id)
			ev = self.poll(min(rem, POLL_SLICE))
			if ev.kind == "timeout":
				continue
			el = self._element_or_raise(ev)
			if is_reply(el, iq_id):
				return el
			self.stash.append(el)

	def iq(self, xml_text, iq_id, timeout=5):
		"""Sends an IQ and returns parse_reply() of its reply, or
		{"type": "timeout"}; stream errors and EOF are reported as
		{"type": "stream-error", "condition"} / {"type": "closed"}."""
		self.send_raw(xml_text)
		try:
			return parse_reply(self.wait_reply(iq_id, timeout))
		except Timeout:
			return {"type": "timeout", "id": iq_id}
		except StreamError as e:
			return {"type": "stream-error", "id": iq_id,
			    "condition": e.condition, "text": e.text}
		except StreamClosed as e:
			return {"type": "closed", "id": iq_id, "kind": e.kind,
			    "text": e.text}

	def _from(self, from_):
		return from_ if from_ is not None else self.from_domain

	def disco_info(self, to=None, from_=None, node=None, timeout=5):
		i = new_id()
		return self.iq(build_disco_info(to or self.to_domain,
		    self._from(from_), i, node), i, timeout)

	def disco_items(self, node=NS_COMMANDS, to=None, from_=None,
	    timeout=5):
		i = new_id()
		return self.iq(build_disco_items(to or self.to_domain,
		    self._from(from_), i, node), i, timeout)

	def ping(self, to=None, from_=None, timeout=5):
		i = new_id()
		return self.iq(build_ping(to or self.to_domain,
		    self._from(from_), i), i, timeout)

	def register(self, node, token, type_="apns", to=None, from_=None,
	    timeout=5, **kw):
		"""v1-register-push from a user's full JID (default
		user@OURDOMAIN/monal)."""
		i = new_id()
		f = from_ or "user@%s/monal" % self.from_domain
		return self.iq(build_register(to or self.to_domain, node, token,
		    type_, f, i, **kw), i, timeout)

	def unregister(self, node, type_="apns", to=None, from_=None,
	    timeout=5, **kw):
		i = new_id()
		f = from_ or "user@%s/monal" % self.from_domain
		return self.iq(build_unregister(to or self.to_domain, node,
		    type_, f, i, **kw), i, timeout)

	def publish(self, node, secret=None, push_module=None, body=None,
	    summary=None, to=None, from_=None, timeout=5, options=None):
		"""XEP-0357 publish from our domain (or from_, e.g. a bare JID)."""
		i = new_id()
		return self.iq(build_publish(to or self.to_domain, node, secret,
		    push_module, body, summary, self._from(from_), i, options),
		    i, timeout)

	def message(self, to, body, from_=None, type_="chat"):
		"""Sends a message (no reply expected); returns its id."""
		i = new_id()
		f = from_ or "user@%s/monal" % self.from_domain
		self.send_raw(build_message(to, body, f, i, type_))
		return i

	def send_iq(self, type_, payload, to=None, from_=None, id_=None):
		"""Sends <iq/> around payload (XML text); returns the id."""
		i = id_ or new_id()
		self.send_raw(build_iq(type_, to or self.to_domain, payload,
		    self._from(from_), i))
		return i


# --- the listening side -----------------------------------------------------

class Inbox:
	"""Events from the listener's streams; get() takes the first that
	matches, waiting at most timeout seconds."""

	def __init__(self):
		self.items = []
		self.cv = threading.Condition()
		self.on_put = None

	def put(self, ev):
		with self.cv:
			self.items.append(ev)
			self.cv.notify_all()
		if self.on_put is not None:
			self.on_put(ev)

	def get(self, timeout=5, match=None):
		deadline = time.monotonic() + timeout
		with self.cv:
			while True:
				for i, ev in enumerate(self.items):
					if match is None or match(ev):
						return self.items.pop(i)
				rem = deadline - time.monotonic()
				if rem <= 0:
					return None
				self.cv.wait(rem)


class Incoming(XMLStream):
	"""A stream someone opened to our listener; served by its own thread.
	Attributes: remote (the header's from), stream_id, domains (the
	authenticated originating domains), mechanism, bidi, tls, alpn.
	Stanzas go to peer.inbox as Event("stanza", stream=this stream); a
	test answers over the stream with send_later(xml), never send()."""

	def __init__(self, listener, sock, addr):
		super().__init__(sock, "in%d" % listener.count,
		    listener.peer.trace)
		self.listener = listener
		self.peer = listener.peer
		self.addr = addr
		self.remote = None
		self.stream_id = None
		self.domains = set()
		self.mechanism = None
		self.sasl_done = False
		self.bidi = False
		self.outbox = collections.deque()
		self.olock = threading.Lock()

	def send_later(self, data):
		"""Queues data for the stream's thread to send (thread safe)."""
		with self.olock:
			self.outbox.append(data)

	def _flush(self):
		while True:
			with self.olock:
				if not self.outbox:
					return
				d = self.outbox.popleft()
			self.send(d)

	def _fail(self, condition, text=None):
		self.peer.inbox.put(Event("violation", condition=condition,
		    text=text, stream=self))
		try:
			self.send_raw(stream_error_xml(condition, text) +
			    "</stream:stream>")
		except OSError:
			pass
		self.abort()

	def _features(self):
		lst = self.listener
		f = []
		if self.tls is None and lst.tls == "starttls":
			f.append("<starttls xmlns='%s'>%s</starttls>" % (NS_TLS,
			    "<required/>" if lst.require_tls else ""))
		if (self.tls or not lst.require_tls) and not self.sasl_done:
			if lst.offer_external and cert_matches(self.peer_cert,
			    self.remote):
				f.append("<mechanisms xmlns='%s'><mechanism>"
				    "EXTERNAL</mechanism></mechanisms>" % NS_SASL)
			if lst.offer_dialback:
				f.append("<dialback xmlns='%s'><errors/>"
				    "</dialback>" % NS_DB_FEATURE)
			if lst.offer_bidi and not self.bidi:
				f.append("<bidi xmlns='%s'/>" % NS_BIDI_FEATURE)
		return "<stream:features>%s</stream:features>" % "".join(f)

	def _open_stream(self):
		ev = self.poll(self.listener.timeout)
		if ev.kind != "header":
			if ev.kind == "xml-error":
				cond = "restricted-xml" if "restricted" in ev.text \
				    else "not-well-formed"
			elif ev.kind == "timeout":
				cond = "connection-timeout"
			else:
				raise StreamClosed(ev.kind, ev.text)
			self.send_raw(stream_header(self.peer.domain, None,
			    new_id()))
			return self._fail(cond)
		h = ev.extra["header"]
		to = (h.get("to") or "").lower()
		self.remote = (h.get("from") or "").lower() or None
		self.stream_id = new_id() + new_id()
		self.send_raw(stream_header(to or self.peer.domain, self.remote,
		    self.stream_id))
		if h.get("tag") != "{%s}stream" % NS_STREAM or \
		    self.header_ns.get("") != NS_SERVER:
			return self._fail("invalid-namespace")
		if to and to not in self.peer.domains:
			return self._fail("host-unknown")
		self.send_raw(self._features())
		return True

	def serve(self):
		try:
			if self.listener.tls == "direct":
				self.starttls_server(self.peer.server_context(
				    alpn=ALPN_XMPP_SERVER), self.listener.timeout)
			if not self._open_stream():
				return
			while not self.dead:
				self._flush()
				ev = self.poll(HANDLER_SLICE)
				if ev.kind == "timeout":
					if self.listener.stopping:
						break
					continue
				if ev.kind == "xml-error":
					self.peer.inbox.put(ev)
					self._fail("restricted-xml" if "restricted" in
					    ev.text else "not-well-formed")
					break
				if ev.kind != "stanza":
					self.peer.inbox.put(ev)
					break
				self._handle(ev.element)
		except (OSError, ssl.SSLError, StreamClosed, StreamError,
		    Timeout) as e:
			self.peer.inbox.put(Event("error", text=repr(e),
			    stream=self))
		finally:
			self.abort()

	def _handle(self, el):
		tag = el.tag
		lst = self.listener
		if tag == "{%s}starttls" % NS_TLS:
			if self.tls is not None or lst.tls != "starttls":
				return self._fail("policy-violation", "starttls")
			self.send_raw("<proceed xmlns='%s'/>" % NS_TLS)
			self.starttls_server(self.peer.server_context(), lst.timeout)
			self.reset_parser()
			self._open_stream()
			return
		if lst.require_tls and self.tls is None:
			return self._fail("policy-violation", "TLS required")
		if tag == "{%s}auth" % NS_SASL:
			return self._sasl(el)
		if tag == "{%s}bidi" % NS_BIDI:
			self.bidi = True
			self.peer.inbox.put(Event("bidi", stream=self,
			    domain=self.remote))
			return
		if tag == "{%s}verify" % NS_DB:
			if el.get("type") is None:
				self.send_raw(self.peer.answer_verify(el))
			return
		if tag == "{%s}result" % NS_DB:
			if el.get("type") is None:
				self._db_result(el)
			return
		if split_tag(tag)[0] != NS_SERVER:
			return self._fail("unsupported-stanza-type", tag)
		if not self.domains:
			return self._fail("not-authorized")
		if domain_of(el.get("from")) not in self.domains:
			return self._fail("invalid-from", el.get("from"))
		if domain_of(el.get("to")) not in self.peer.domains:
			return self._fail("host-unknown", el.get("to"))
		self.peer.inbox.put(Event("stanza", element=el, stream=self))
		if lst.answer_ping and local_name(tag) == "iq" and \
		    el.get("type") == "get" and \
		    el.find("{%s}ping" % NS_PING) is not None:
			self.send_raw("<iq type='result'%s/>" % _attrs(
			    from_=el.get("to"), to=el.get("from"), id=el.get("id")))

	def _sasl(self, el):
		ok = (el.get("mechanism") == "EXTERNAL" and not self.sasl_done and
		    self.listener.offer_external and
		    cert_matches(self.peer_cert, self.remote))
		if ok:
			data = (el.text or "").strip()
			if data not in ("", "="):
				try:
					authz = base64.b64decode(data,
					    validate=True).decode()
				except (binascii.Error, UnicodeDecodeError):
					authz = None
				ok = authz is not None and authz.lower() == self.remote
		if not ok:
			self.send_raw("<failure xmlns='%s'><not-authorized/>"
			    "</failure>" % NS_SASL)
			self.peer.inbox.put(Event("auth-failed", stream=self,
			    domain=self.remote, mechanism="EXTERNAL"))
			return
		self.send_raw("<success xmlns='%s'/>" % NS_SASL)
		self.sasl_done = True
		self.mechanism = "external"
		self.domains.add(self.remote)
		self.peer.inbox.put(Event("auth", stream=self,
		    domain=self.remote, mechanism="external", bidi=self.bidi))
		self.reset_parser()
		self._open_stream()

	def _db_result(self, el):
		frm = (el.get("from") or "").lower()
		to = (el.get("to") or "").lower()
		key = el.text or ""
		if to not in self.peer.domains:
			return self._fail("host-unknown", to)
		if self.listener.verify_dialback:
			verdict = self.peer.verify_remote(frm, to, self.stream_id,
			    key)
		else:
			verdict = "valid"
		self.send_raw("<db:result from=%s to=%s type=%s/>" % (
		    quoteattr(to), quoteattr(frm), quoteattr(verdict)))
		if verdict == "valid":
			self.domains.add(frm)
			if self.mechanism is None:
				self.mechanism = "dialback"
			self.peer.inbox.put(Event("auth", stream=self, domain=frm,
			    mechanism="dialback", bidi=self.bidi))
		else:
			self.peer.inbox.put(Event("auth-failed", stream=self,
			    domain=frm, mechanism="dialback", text=verdict))


class Listener:
	def __init__(self, peer, host, port, tls, require_tls, offer_external,
	    offer_dialback, offer_bidi, verify_dialback, answer_ping, timeout):
		self.peer = peer
		self.tls = tls
		self.require_tls = require_tls and tls != "none"
		self.offer_external = offer_external
		self.offer_dialback = offer_dialback
		self.offer_bidi = offer_bidi
		self.verify_dialback = verify_dialback
		self.answer_ping = answer_ping
		self.timeout = timeout
		self.stopping = False
		self.count = 0
		self.streams = []
		self.sock = socket.socket(socket.AF_INET6 if ":" in host
		    else socket.AF_INET)
		self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		self.sock.bind((host, port))
		self.sock.listen(16)
		self.sock.settimeout(HANDLER_SLICE)
		self.port = self.sock.getsockname()[1]
		self.thread = threading.Thread(target=self._accept, daemon=True)
		self.thread.start()

	def _accept(self):
		while not self.stopping:
			try:
				c, addr = self.sock.accept()
			except socket.timeout:
				continue
			except OSError:
				break
			self.count += 1
			s = Incoming(self, c, addr)
			self.streams.append(s)
			threading.Thread(target=s.serve, daemon=True).start()

	def close(self):
		self.stopping = True
		try:
			self.sock.close()
		except OSError:
			pass
		self.thread.join(1)
		for s in self.streams:
			s.abort()


# --- the peer ----------------------------------------------------------------

class Peer:
	"""One XMPP server domain.  routes: domain -> (host, port) or
	(host, port, tls) telling the receiving role where a domain's
	authoritative server is (no DNS).  extra_domains: further domains we
	answer dialback verification for (piggybacking tests)."""

	def __init__(self, domain, certfile=None, keyfile=None, cafile=None,
	    dialback_secret=None, routes=None, extra_domains=(), trace=None,
	    verify_server=True):
		self.domain = domain.lower()
		self.domains = {self.domain} | {d.lower() for d in extra_domains}
		self.certfile = certfile
		self.keyfile = keyfile
		self.cafile = cafile
		self.secret = dialback_secret or secrets.token_hex(16)
		self.routes = dict(routes or {})
		self.trace = trace
		self.verify_server = verify_server
		self.inbox = Inbox()
		self.listener = None

	def client_context(self, alpn=None):
		ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
		if self.cafile and self.verify_server:
			ctx.load_verify_locations(self.cafile)
		else:
			ctx.check_hostname = False
			ctx.verify_mode = ssl.CERT_NONE
		if self.certfile:
			ctx.load_cert_chain(self.certfile, self.keyfile)
		if alpn:
			ctx.set_alpn_protocols([alpn])
		return ctx

	def server_context(self, alpn=None):
		ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
		ctx.load_cert_chain(self.certfile, self.keyfile)
		if self.cafile and self.listener is not None and \
		    self.listener.offer_external:
			# A client certificate without the clientAuth EKU fails
			# this check in OpenSSL; listen(offer_external=False)
			# then, to let such a peer in with dialback.
			ctx.verify_mode = ssl.CERT_OPTIONAL
			ctx.load_verify_locations(self.cafile)
		if alpn:
			ctx.set_alpn_protocols([alpn])
		return ctx

	def connect(self, host, port, to_domain, tls="starttls",
	    auth="dialback", bidi=True, timeout=5, stop_at="auth",
	    authzid="domain", db_key=None, from_domain=None,
	    server_hostname=None):
		"""Opens a stream and negotiates it; returns an Outgoing.
		tls: starttls, direct (ALPN xmpp-server), auto (STARTTLS when
		offered), none.  auth: external, dialback, none.  bidi: send
		<bidi/> when offered.  stop_at: one of STAGES, to stop early for
		malformed-input tests.  authzid: "domain", "empty" (sends "=") or
		a literal.  db_key: send this dialback key instead of the right
		one.  from_domain: header from (default ours; "" omits it).
		Raises NegotiationError (.step, .condition) or OSError."""
		s = socket.create_connection((host, port), timeout=timeout)
		frm = self.domain if from_domain is None else from_domain
		o = Outgoing(self, s, frm, to_domain)
		try:
			o.negotiate(tls=tls, auth=auth, bidi=bidi, timeout=timeout,
			    stop_at=stop_at, authzid=authzid, db_key=db_key,
			    server_hostname=server_hostname)
		except BaseException:
			o.abort()
			raise
		return o

	def listen(self, port=0, host="127.0.0.1", tls="starttls",
	    require_tls=True, offer_external=True, offer_dialback=True,
	    offer_bidi=True, verify_dialback=True, answer_ping=True,
	    timeout=10):
		"""Starts the listener thread; returns the Listener (.port).
		tls: starttls (offered; required unless require_tls=False),
		direct (TLS at once, ALPN xmpp-server), none.  EXTERNAL is
		offered when offer_external, a cafile is set and the client's
		certificate verified and names its stream's from.
		verify_dialback=False accepts every <db:result/> without asking
		the authoritative server."""
		if tls != "none" and not self.certfile:
			raise ValueError("listen with TLS needs certfile")
		self.listener = Listener(self, host, port, tls, require_tls,
		    offer_external, offer_dialback, offer_bidi, verify_dialback,
		    answer_ping, timeout)
		return self.listener

	def answer_verify(self, el):
		"""Authoritative role: the <db:verify type=.../> answering el."""
		frm, to = el.get("from") or "", (el.get("to") or "").lower()
		ok = to in self.domains and hmac.compare_digest(
		    (el.text or "").strip().encode(),
		    dialback_key(self.secret, frm, to, el.get("id") or "").encode())
		self.inbox.put(Event("verify", domain=to, receiving=frm,
		    valid=bool(ok)))
		return "<db:verify from=%s to=%s id=%s type=%s>%s</db:verify>" % (
		    quoteattr(to), quoteattr(frm), quoteattr(el.get("id") or ""),
		    quoteattr("valid" if ok else "invalid"), escape(el.text or ""))

	def verify_remote(self, originating, receiving, stream_id, key,
	    timeout=5):
		"""Receiving role: asks originating's authoritative server
		(routes, else DNS A on 5269) whether key is right; returns
		"valid", "invalid" or "error"."""
		r = self.routes.get(originating)
		if r is None:
			r = (originating, 5269)
		host, port = r[0], int(r[1])
		tls = r[2] if len(r) > 2 else "auto"
		try:
			o = self.connect(host, port, originating, tls=tls,
			    auth="none", bidi=False, timeout=timeout,
			    from_domain=receiving)
		except (OSError, NegotiationError, ssl.SSLError) as e:
			self.inbox.put(Event("error", text="verify_remote: %r" % e))
			return "error"
		try:
			o.send_raw("<db:verify from=%s to=%s id=%s>%s</db:verify>" %
			    (quoteattr(receiving), quoteattr(originating),
			    quoteattr(stream_id), escape(key)))
			deadline = time.monotonic() + timeout
			while True:
				el = o.expect_tag(("{%s}verify" % NS_DB,),
				    max(deadline - time.monotonic(), 0), "verify")
				if el.get("id") == stream_id:
					return "valid" if el.get("type") == "valid" \
					    else "invalid"
		except NegotiationError as e:
			self.inbox.put(Event("error", text="verify_remote: %r" % e))
			return "error"
		finally:
			o.close(0.5)

	def expect_incoming(self, timeout=5, kind="stanza", match=None):
		"""The next listener event of that kind (None: any) that
		matches; raises Timeout."""
		ev = self.inbox.get(timeout, lambda e: (kind is None or
		    e.kind == kind) and (match is None or match(e)))
		if ev is None:
			raise Timeout("no %s event" % kind)
		return ev

	def close(self):
		if self.listener is not None:
			self.listener.close()


# --- command line --------------------------------------------------------------

STEP_HELP = """steps (after the connect options; key=value arguments):
  disco-info [to=J] [node=N]          disco#info; prints identities, features
  disco-items [node=N] [to=J]         disco#items (default node: commands)
  ping [to=J]
  register node=N token=T [type=apns] [from=JID] [to=J] [form-type=F]
                                      v1-register-push; prints node, secret
  unregister node=N [type=apns] [from=JID] [to=J]
  publish node=N [secret=S] [push-module=M] [body=TEXT] [sender=JID]
          [from=J] [to=J]
                                      XEP-0357 publish; body= adds a summary
  message to=J body=TEXT [from=JID]   a <message/>; prints its id
  iq type=get|set xml=PAYLOAD [to=J] [from=J]   any IQ
  raw data=TEXT | payload=NAME [size=N] [depth=N]   bytes as they are
  dialback domain=D [key=K]           piggyback another domain (XEP-0220)
  expect [timeout=S]                  print the next stanza or stream event
  incoming [timeout=S]                print the next listener event
  sleep secs=S
  close                               send </stream:stream>, wait for theirs
every step takes timeout=S (default --timeout).  Each prints one JSON line
with "step" and "type": result, error (error_type, condition, text),
timeout, stream-error (condition), closed; a stream error or EOF ends the
run.
"""

EPILOG = """commands:
  connect   open a stream (as --from) and run steps; see "connect --help"
  listen    only listen; prints "listening on PORT", then one JSON line per
            event (stanza, auth, bidi, verify, violation, closed, eof ...)
  raw       malformed input: negotiate up to --stage, send --payload or
            --data (or nothing with --stall) and print what came back
  key       print the XEP-0185 dialback key for SECRET RECEIVING
            ORIGINATING STREAMID
  payload   print a named malformed payload to stdout

examples:
  s2speer.py connect --port 5269 --from example.test --to push.localhost \\
      --cafile ca.pem --cert example.test.pem --key example.test.key \\
      --auth dialback --bidi --listen-port 0 \\
      register node=dev1 token=abcd publish node=dev1 secret=... body=hi
  s2speer.py raw --port 5269 --to push.localhost --stage tcp \\
      --payload billion-laughs --wait 3
  s2speer.py raw --port 5270 --tls direct --stage tcp --stall --wait 20

Connect prints one JSON line for the connection ({"step": "connect",
"ok": true, "auth": ..., "bidi": ..., "tls": ..., "stream_id": ...} or
"ok": false with "failed" (the step) and "condition") and one per step;
exit status 0 when the connection was made, 1 when not, 2 for usage.
"""


def _route(text):
	dom, _, rest = text.partition("=")
	parts = rest.split(":")
	if not dom or len(parts) not in (2, 3):
		raise argparse.ArgumentTypeError("DOMAIN=HOST:PORT[:TLS]")
	r = (parts[0], int(parts[1])) + tuple(parts[2:])
	return dom.lower(), r


def _peer_args(p, listen_only=False):
	p.add_argument("--from", dest="from_", metavar="DOMAIN",
	    default="example.test", help="our domain (default example.test)")
	p.add_argument("--cert", help="our certificate (PEM)")
	p.add_argument("--key", help="its key")
	p.add_argument("--cafile", help="CA to verify the other side with")
	p.add_argument("--no-verify", action="store_true",
	    help="do not verify the server's certificate")
	p.add_argument("--secret", default=None,
	    help="dialback secret (default random)")
	p.add_argument("--route", type=_route, action="append", default=[],
	    metavar="DOMAIN=HOST:PORT[:TLS]",
	    help="where DOMAIN's server is, for dialback verification")
	p.add_argument("--extra-domain", action="append", default=[],
	    help="another domain of ours (piggybacking)")
	p.add_argument("--timeout", type=float, default=5,
	    help="bound of each wait in seconds (default 5)")
	p.add_argument("--trace", action="store_true",
	    help="show the XML both ways on stderr")
	pre = "" if listen_only else "listen-"
	p.add_argument("--%sport" % pre, dest="listen_port", type=int,
	    default=None if not listen_only else 0,
	    help="run a listener on this port (0: any)")
	p.add_argument("--%shost" % pre, dest="listen_host",
	    default="127.0.0.1")
	p.add_argument("--%stls" % pre, dest="listen_tls", default="starttls",
	    choices=("starttls", "direct", "none"))
	p.add_argument("--%sno-external" % pre, dest="listen_no_external",
	    action="store_true", help="listener: never offer SASL EXTERNAL")
	p.add_argument("--%sno-bidi" % pre, dest="listen_no_bidi",
	    action="store_true", help="listener: do not offer bidi")
	p.add_argument("--%sno-verify-dialback" % pre,
	    dest="listen_no_verify_db", action="store_true",
	    help="listener: accept every db:result unverified")


def _conn_args(p):
	p.add_argument("--host", default="127.0.0.1")
	p.add_argument("--port", type=int, required=True)
	p.add_argument("--to", required=True, metavar="DOMAIN",
	    help="the domain we open the stream to (and TLS SNI)")
	p.add_argument("--tls", default="starttls",
	    choices=("starttls", "direct", "auto", "none"))
	p.add_argument("--sni", default=None, help="TLS SNI (default --to)")
	p.add_argument("--header-from", default=None,
	    help="stream header from (default --from; '' leaves it out)")


def _make_peer(a):
	routes = dict(a.route)
	return Peer(a.from_, certfile=a.cert, keyfile=a.key, cafile=a.cafile,
	    dialback_secret=a.secret, routes=routes,
	    extra_domains=a.extra_domain,
	    trace=sys.stderr if a.trace else None,
	    verify_server=not a.no_verify)


def _start_listener(peer, a):
	if a.listen_port is None:
		return None
	lst = peer.listen(port=a.listen_port, host=a.listen_host,
	    tls=a.listen_tls, offer_external=not a.listen_no_external,
	    offer_bidi=not a.listen_no_bidi,
	    verify_dialback=not a.listen_no_verify_db)
	return lst


def _emit(d):
	print(json.dumps(public(d), sort_keys=True), flush=True)


def _parse_steps(tokens):
	steps = []
	for t in tokens:
		if "=" in t and steps:
			k, _, v = t.partition("=")
			steps[-1][1][k] = v
		elif "=" in t:
			raise SystemExit("step argument %r before any step" % t)
		else:
			steps.append((t, {}))
	return steps


def _event_dict(ev):
	d = ev.to_dict()
	d["type"] = ev.kind
	return d


def _run_step(s, peer, name, kw, timeout):
	t = float(kw.pop("timeout", timeout))
	to = kw.pop("to", None)
	frm = kw.pop("from", None)
	if name == "disco-info":
		return s.disco_info(to=to, from_=frm, node=kw.get("node"),
		    timeout=t)
	if name == "disco-items":
		return s.disco_items(node=kw.get("node", NS_COMMANDS), to=to,
		    from_=frm, timeout=t)
	if name == "ping":
		return s.ping(to=to, from_=frm, timeout=t)
	if name == "register":
		extra = {}
		if "form-type" in kw:
			extra["form_type"] = kw["form-type"] or None
		return s.register(kw.get("node"), kw.get("token"),
		    kw.get("type", "apns"), to=to, from_=frm, timeout=t, **extra)
	if name == "unregister":
		return s.unregister(kw.get("node"), kw.get("type", "apns"), to=to,
		    from_=frm, timeout=t)
	if name == "publish":
		summary = None
		if "sender" in kw:
			summary = {"last-message-sender": kw["sender"]}
		return s.publish(kw["node"], secret=kw.get("secret"),
		    push_module=kw.get("push-module"), body=kw.get("body"),
		    summary=summary, to=to, from_=frm, timeout=t)
	if name == "message":
		i = s.message(to or s.to_domain, kw.get("body", ""), from_=frm)
		return {"type": "sent", "id": i}
	if name == "iq":
		i = new_id()
		x = build_iq(kw.get("type", "get"), to or s.to_domain,
		    kw.get("xml", ""), frm if frm is not None else s.from_domain,
		    i)
		return s.iq(x, i, t)
	if name == "raw":
		if "payload" in kw:
			data = make_payload(kw["payload"], s.from_domain,
			    s.to_domain, size=int(kw.get("size", 0)) or None,
			    depth=int(kw.get("depth", 0)) or None)
		else:
			data = kw.get("data", "").encode()
		s.send_raw(data)
		return {"type": "sent", "bytes": len(data)}
	if name == "dialback":
		try:
			s.dialback(kw["domain"], t, key=kw.get("key"))
			return {"type": "valid", "domain": kw["domain"]}
		except NegotiationError as e:
			return {"type": "error", "condition": e.condition,
			    "text": e.text, "domain": kw["domain"]}
	if name == "expect":
		if s.stash:
			return {"type": "stanza", "xml": tostring(s.stash.pop(0))}
		return _event_dict(s.poll(t))
	if name == "incoming":
		ev = peer.inbox.get(t)
		return _event_dict(ev) if ev else {"type": "timeout"}
	if name == "sleep":
		time.sleep(float(kw.get("secs", 1)))
		return {"type": "slept"}
	if name == "close":
		s.send_raw("</stream:stream>")
		ev = s.poll(t)
		while ev.kind == "stanza":
			ev = s.poll(t)
		return _event_dict(ev)
	raise SystemExit("unknown step %r" % name)


def cmd_connect(a):
	peer = _make_peer(a)
	lst = _start_listener(peer, a)
	if lst is not None:
		print("listening on %d" % lst.port, file=sys.stderr, flush=True)
	steps = _parse_steps(a.steps)
	res = {"step": "connect"}
	try:
		s = peer.connect(a.host, a.port, a.to, tls=a.tls, auth=a.auth,
		    bidi=a.bidi, timeout=a.timeout, stop_at=a.stop_at,
		    authzid=a.authzid, db_key=a.db_key,
		    from_domain=a.header_from, server_hostname=a.sni)
	except NegotiationError as e:
		res.update(ok=False, failed=e.step, condition=e.condition,
		    text=e.text)
		_emit(res)
		peer.close()
		return 1
	except (OSError, ssl.SSLError) as e:
		res.update(ok=False, failed="connect", condition="socket",
		    text=str(e))
		_emit(res)
		peer.close()
		return 1
	res.update(ok=True, stage=s.stage, stream_id=s.stream_id, tls=s.tls,
	    alpn=s.alpn, auth=s.auth, bidi=s.bidi,
	    mechanisms=s.offered)
	_emit(res)
	for name, kw in steps:
		r = dict(_run_step(s, peer, name, kw, a.timeout))
		r["step"] = name
		_emit(r)
		if r.get("type") in ("stream-error", "closed", "eof",
		    "xml-error"):
			break
	s.abort()
	peer.close()
	return 0


def cmd_listen(a):
	peer = _make_peer(a)
	done = threading.Event()

	def show(ev):
		_emit(_event_dict(ev))
	peer.inbox.on_put = show
	lst = _start_listener(peer, a)
	print("listening on %d" % lst.port, flush=True)
	try:
		done.wait(a.duration)
	except KeyboardInterrupt:
		pass
	peer.close()
	return 0


def cmd_raw(a):
	peer = _make_peer(a)
	if _start_listener(peer, a) is not None:
		print("listening on %d" % peer.listener.port, file=sys.stderr,
		    flush=True)
	try:
		s = peer.connect(a.host, a.port, a.to, tls=a.tls, auth=a.auth,
		    bidi=False, timeout=a.timeout, stop_at=a.stage,
		    from_domain=a.header_from, server_hostname=a.sni)
	except (NegotiationError, OSError, ssl.SSLError) as e:
		_emit({"step": "raw", "ok": False, "text": str(e)})
		peer.close()
		return 1
	if a.stage in ("proceed", "tls-handshake") or (a.stage == "tcp"):
		# the server will answer our payload's header, if any
		s.reset_parser()
	sent = 0
	start = time.monotonic()
	try:
		if a.payload:
			data = make_payload(a.payload, a.from_, a.to, a.size,
			    a.depth)
		elif a.data is not None:
			data = a.data.encode()
		else:
			data = b""
		if data and not a.stall:
			s.send_raw(data)
			sent = len(data)
	except OSError as e:
		_emit({"step": "raw", "ok": True, "sent": sent,
		    "send_error": str(e)})
	events = []
	deadline = start + a.wait
	closed_after = None
	while True:
		ev = s.poll(max(deadline - time.monotonic(), 0))
		if ev.kind == "timeout":
			break
		d = _event_dict(ev)
		d.pop("stream", None)
		if ev.kind == "header":
			d = {"type": "header", "id": ev.extra["header"].get("id")}
		events.append(d)
		if ev.kind in ("closed", "eof", "xml-error"):
			if ev.kind != "xml-error":
				closed_after = round(time.monotonic() - start, 3)
				break
	r = {"step": "raw", "ok": True, "stage": a.stage, "sent": sent,
	    "events": events, "closed_after": closed_after,
	    "stream_error": next((e.get("condition") for e in events
	    if e["type"] == "stream-error"), None)}
	_emit(r)
	s.abort()
	peer.close()
	return 0


def main(argv=None):
	ap = argparse.ArgumentParser(prog="s2speer.py",
	    description="Scripted XMPP server-to-server peer for monalpushd "
	    "tests.", epilog=EPILOG,
	    formatter_class=argparse.RawDescriptionHelpFormatter)
	sub = ap.add_subparsers(dest="cmd", required=True)

	c = sub.add_parser("connect", help="open a stream and run steps",
	    epilog=STEP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
	_conn_args(c)
	_peer_args(c)
	c.add_argument("--auth", default="dialback",
	    choices=("external", "dialback", "none"))
	c.add_argument("--bidi", action="store_true",
	    help="request XEP-0288 bidi when offered")
	c.add_argument("--authzid", default="domain",
	    help="EXTERNAL authzid: domain (default), empty ('='), or a value")
	c.add_argument("--db-key", default=None,
	    help="send this dialback key instead of the right one")
	c.add_argument("--stop-at", default="auth", choices=STAGES)
	c.add_argument("steps", nargs=argparse.REMAINDER)
	c.set_defaults(func=cmd_connect)

	ls = sub.add_parser("listen", help="listen only")
	_peer_args(ls, listen_only=True)
	ls.add_argument("--duration", type=float, default=None,
	    help="stop after S seconds (default: until killed)")
	ls.set_defaults(func=cmd_listen)

	r = sub.add_parser("raw", help="malformed input",
	    epilog="payloads:\n" + "".join("  %-22s %s\n" % kv
	    for kv in sorted(PAYLOADS.items())) + "\nstages: tcp (nothing "
	    "sent; with --tls direct before the TLS handshake), header (our "
	    "header sent, theirs and features read), proceed (<proceed/> "
	    "read, TLS not started), tls-handshake (TLS up, no header on it), "
	    "tls (TLS and the restart done), auth (authenticated)",
	    formatter_class=argparse.RawDescriptionHelpFormatter)
	_conn_args(r)
	_peer_args(r)
	r.add_argument("--stage", default="header", choices=STAGES)
	r.add_argument("--auth", default="dialback",
	    choices=("external", "dialback", "none"),
	    help="how to authenticate when --stage auth")
	r.add_argument("--payload", choices=sorted(PAYLOADS))
	r.add_argument("--data", help="send this text instead")
	r.add_argument("--size", type=int, default=None)
	r.add_argument("--depth", type=int, default=None)
	r.add_argument("--stall", action="store_true",
	    help="send nothing; report when the server gives up")
	r.add_argument("--wait", type=float, default=5,
	    help="how long to watch for the answer (default 5 s)")
	r.set_defaults(func=cmd_raw)

	k = sub.add_parser("key", help="print a dialback key")
	k.add_argument("secret")
	k.add_argument("receiving")
	k.add_argument("originating")
	k.add_argument("stream_id")
	k.set_defaults(func=lambda a: print(dialback_key(a.secret, a.receiving,
	    a.originating, a.stream_id)) or 0)

	pl = sub.add_parser("payload", help="print a malformed payload")
	pl.add_argument("name", choices=sorted(PAYLOADS))
	pl.add_argument("--from", dest="from_", default="example.test")
	pl.add_argument("--to", default="push.localhost")
	pl.add_argument("--size", type=int, default=None)
	pl.add_argument("--depth", type=int, default=None)
	pl.set_defaults(func=lambda a: sys.stdout.buffer.write(make_payload(
	    a.name, a.from_, a.to, a.size, a.depth)) and 0)

	a = ap.parse_args(argv)
	return a.func(a)


if __name__ == "__main__":
	sys.exit(main())
