#!/usr/bin/python3
"""What Monal does towards a push service, with slixmpp, for t_interop.sh.

    monal_client.py [options] register PUSHJID TOKEN [NODE]
        v1-register-push to PUSHJID (XEP-0050), then XEP-0357 <enable/>
        at our own server with the node and secret of the reply.
    monal_client.py [options] token PUSHJID TOKEN APP
        token mode: <enable/> with node = TOKEN and pushModule = APP.
    monal_client.py [options] unregister PUSHJID NODE
        v1-unregister-push to PUSHJID, then XEP-0357 <disable/> of that
        node at our own server.
    monal_client.py [options] send TO BODY
        a chat message to TO, then a ping to our server so that the
        message has been routed before we leave.

Prints one line per step ("registered status=... node=...", "secret N
chars", "enabled", "unregistered ...", "disabled", "sent") and "error:
..." on failure; exits 0 only when every step worked.  The secret itself
is never printed.
"""

import argparse
import asyncio
import logging
import sys
import uuid
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
NS_PUSH = "urn:xmpp:push:0"
FORM_REGISTER = ("https://github.com/tmolitor-stud-tu/mod_push_appserver/"
                 "#v1-register-push")
FORM_UNREGISTER = ("https://github.com/tmolitor-stud-tu/mod_push_appserver/"
                   "#v1-unregister-push")
FORM_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"


def form(ftype, fields):
    x = ET.Element("{%s}x" % NS_DATA, type="submit")
    for var, value in [("FORM_TYPE", ftype)] + fields:
        f = ET.SubElement(x, "{%s}field" % NS_DATA, var=var)
        ET.SubElement(f, "{%s}value" % NS_DATA).text = value
    return x


def form_values(x):
    values = {}
    if x is None:
        return values
    for f in x.findall("{%s}field" % NS_DATA):
        v = f.find("{%s}value" % NS_DATA)
        values[f.get("var")] = v.text if v is not None else None
    return values


def out(line):
    print(line, flush=True)


class Monal(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.ca_certs = args.ca
        self.ok = False
        self.seq = 0
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_all_auth", self.auth_failed)

    def auth_failed(self, event):
        out("error: authentication failed")
        self.disconnect()

    def iq_set(self, to, payload):
        # Our own id for every IQ: concurrent IQs never share one.
        self.seq += 1
        iq = self.make_iq_set(ito=to)
        iq["id"] = "monal-%d-%s" % (self.seq, uuid.uuid4().hex[:12])
        iq.append(payload)
        return iq.send(timeout=self.args.timeout)

    async def enable(self, pushjid, node, fields):
        en = ET.Element("{%s}enable" % NS_PUSH, jid=pushjid, node=node)
        en.append(form(FORM_OPTIONS, fields))
        await self.iq_set(None, en)
        out("enabled jid=%s" % pushjid)

    async def do_register(self, pushjid, token, node=None):
        node = node or str(uuid.uuid4())
        cmd = ET.Element("{%s}command" % NS_COMMANDS,
                         node="v1-register-push", action="execute")
        cmd.append(form(FORM_REGISTER, [("type", "apns"), ("node", node),
                                        ("token", token)]))
        res = await self.iq_set(pushjid, cmd)
        rc = res.xml.find("{%s}command" % NS_COMMANDS)
        if rc is None:
            raise RuntimeError("no command in the reply")
        v = form_values(rc.find("{%s}x" % NS_DATA))
        out("registered status=%s node=%s jid=%s" %
            (rc.get("status"), v.get("node"), v.get("jid")))
        secret = v.get("secret") or ""
        out("secret %d chars" % len(secret))
        if not v.get("node") or not secret:
            raise RuntimeError("the reply lacks node or secret")
        await self.enable(pushjid, v["node"], [("secret", secret)])

    async def do_unregister(self, pushjid, node):
        cmd = ET.Element("{%s}command" % NS_COMMANDS,
                         node="v1-unregister-push", action="execute")
        cmd.append(form(FORM_UNREGISTER, [("type", "apns"), ("node", node)]))
        res = await self.iq_set(pushjid, cmd)
        rc = res.xml.find("{%s}command" % NS_COMMANDS)
        if rc is None:
            raise RuntimeError("no command in the reply")
        v = form_values(rc.find("{%s}x" % NS_DATA))
        out("unregistered status=%s node=%s jid=%s" %
            (rc.get("status"), v.get("node"), v.get("jid")))
        dis = ET.Element("{%s}disable" % NS_PUSH, jid=pushjid, node=node)
        await self.iq_set(None, dis)
        out("disabled jid=%s node=%s" % (pushjid, node))

    async def do_token(self, pushjid, token, app):
        await self.enable(pushjid, token, [("pushModule", app)])

    async def do_send(self, to, body):
        self.send_message(mto=to, mbody=body, mtype="chat")
        self.seq += 1
        await self.plugin["xep_0199"].ping(jid=self.boundjid.host,
                                           timeout=self.args.timeout)
        out("sent to=%s" % to)

    async def start(self, event):
        try:
            await getattr(self, "do_" + self.args.action)(*self.args.params)
            self.ok = True
        except IqError as e:
            err = e.iq["error"]
            out("error: iq %s/%s %s" % (err["type"], err["condition"],
                                       err["text"]))
        except IqTimeout:
            out("error: iq timed out")
        except Exception as e:  # noqa: BLE001 report anything, then leave
            out("error: %s" % e)
        self.disconnect()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=5222)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--jid", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("-v", action="store_true", help="slixmpp debug log")
    ap.add_argument("action", choices=["register", "unregister", "token",
                                       "send"])
    ap.add_argument("params", nargs="+")
    args = ap.parse_args()
    nparams = {"register": (2, 3), "unregister": (2, 2), "token": (3, 3),
               "send": (2, 2)}
    lo, hi = nparams[args.action]
    if not lo <= len(args.params) <= hi:
        ap.error("wrong number of arguments for " + args.action)
    logging.basicConfig(level=logging.DEBUG if args.v else logging.ERROR,
                        format="%(levelname)s %(message)s")

    c = Monal(args)
    c.register_plugin("xep_0199")
    c.connect(address=(args.server, args.port))
    try:
        c.loop.run_until_complete(asyncio.wait_for(c.disconnected,
                                                   3 * args.timeout))
    except asyncio.TimeoutError:
        out("error: no session within %g s" % (3 * args.timeout))
    # slixmpp leaves its filter task pending; end it quietly.
    pending = [t for t in asyncio.all_tasks(c.loop) if not t.done()]
    for t in pending:
        t.cancel()
    c.loop.run_until_complete(asyncio.gather(*pending,
                                             return_exceptions=True))
    return 0 if c.ok else 1


if __name__ == "__main__":
    sys.exit(main())
