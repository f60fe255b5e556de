#!/usr/bin/env python3
"""Writes the hand-written sessions of the corpus: exchanges our client and server
never produce on their own (protocol errors, refusals, broken peers). Each folder
gets the replaying side's messages, written here, and stubs for the peer's, which
`dm-conformance replay --bless` then replaces with what our implementation answers
(reviewed against PROTOCOL.md before committing; see fixtures/sessions/CORPUS.md):

    python3 scripts/corpus/hand.py [NAME...]          # writes fixtures/sessions/<NAME>/
    dm-conformance replay fixtures/sessions/X-err-... --server URL --admin-token T --bless
    dm-conformance replay fixtures/sessions/X-srv-... --client '...' --bless

An existing folder is left alone unless --force is given (it holds blessed answers).
"""

import argparse
import base64
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import manifest as mf  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "corpus-secret"
SERVER_URL = "http://127.0.0.1:8080/dm"  # the recorded server: a replay puts the live one
XML_TYPE = "application/vnd.syncml.dm+xml"

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" '
        '"http://www.openmobilealliance.org/tech/DTD/OMA-TS-DM_SyncML-V1_2.dtd">\n')


def basic(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def cred_xml(kind, data):
    return (f"    <Cred>\n      <Meta><Format xmlns=\"syncml:metinf\">b64</Format>"
            f"<Type xmlns=\"syncml:metinf\">syncml:auth-{kind}</Type></Meta>\n"
            f"      <Data>{data}</Data>\n    </Cred>\n")


def message(target, source, body, msg_id=1, session="1", cred="", ver=("1.2", "DM/1.2"),
            final=True, meta=True):
    m = ("    <Meta><MaxMsgSize xmlns=\"syncml:metinf\">65536</MaxMsgSize>"
         "<MaxObjSize xmlns=\"syncml:metinf\">16777216</MaxObjSize></Meta>\n") if meta else ""
    return (HEAD + '<SyncML xmlns="SYNCML:SYNCML1.2">\n  <SyncHdr>\n'
            f"    <VerDTD>{ver[0]}</VerDTD>\n    <VerProto>{ver[1]}</VerProto>\n"
            f"    <SessionID>{session}</SessionID>\n    <MsgID>{msg_id}</MsgID>\n"
            f"    <Target><LocURI>{target}</LocURI></Target>\n"
            f"    <Source><LocURI>{source}</LocURI></Source>\n"
            f"{cred}{m}  </SyncHdr>\n  <SyncBody>\n{body}"
            + ("    <Final/>\n" if final else "") + "  </SyncBody>\n</SyncML>\n")


def devinfo(dev, first_id=2):
    items = "".join(
        f"        <Item><Source><LocURI>./DevInfo/{k}</LocURI></Source>"
        f"<Meta><Format xmlns=\"syncml:metinf\">chr</Format></Meta><Data>{v}</Data></Item>\n"
        for k, v in [("DevId", dev), ("Man", "dm-client"), ("Mod", "dmrs-sim"), ("DmV", "1.2"),
                     ("Lang", "en-US")])
    return (f"    <Alert><CmdID>1</CmdID><Data>1201</Data></Alert>\n"
            f"    <Replace>\n      <CmdID>{first_id}</CmdID>\n{items}    </Replace>\n")


def pkg1(dev, extra="", cred=True, **kw):
    c = cred_xml("basic", basic(dev, PASSWORD)) if cred else ""
    return message(SERVER_URL, dev, devinfo(dev) + extra, cred=c, **kw)


def status(cmd_id, msg_ref, cmd_ref, cmd, code, target=None):
    t = f"<TargetRef>{target}</TargetRef>" if target else ""
    return (f"    <Status><CmdID>{cmd_id}</CmdID><MsgRef>{msg_ref}</MsgRef><CmdRef>{cmd_ref}</CmdRef>"
            f"<Cmd>{cmd}</Cmd>{t}<Data>{code}</Data></Status>\n")


def server_reply(dev, commands, msg_id=1, header_code=200, cred="", ver=("1.2", "DM/1.2"), final=True):
    """Package 2 answering the client's package 1 (SyncHdr, Alert 1201, Replace)."""
    body = (status(1, 1, 0, "SyncHdr", header_code, dev)
            + status(2, 1, 1, "Alert", 200) + status(3, 1, 2, "Replace", 200) + commands)
    return message(dev, SERVER_URL, body, msg_id=msg_id, cred=cred, ver=ver, final=final)


def later(dev, commands="", msg_id=2, msg_ref=2, final=True):
    """A later server message: the Status of the client's header, then commands."""
    return message(dev, SERVER_URL, status(1, msg_ref, 0, "SyncHdr", 200, dev) + commands,
                   msg_id=msg_id, final=final)


STUB_NOTE = "<!-- stub: replaced by dm-conformance replay --bless -->\n"


def stub_client(dev):
    return pkg1(dev).replace("<SyncML", STUB_NOTE + "<SyncML", 1)


def stub_server(dev):
    return server_reply(dev, "").replace("<SyncML", STUB_NOTE + "<SyncML", 1)


def device(n, auth="basic", server_password=""):
    dev = f"IMEI:35400000001{n:04d}"
    return {"id": dev, "user": dev, "password": PASSWORD, "auth": auth, "client_nonce": "",
            "server_id": "dm-server", "server_password": server_password, "server_nonce": "",
            "encoding": "xml", "model": "dmrs-sim", "manufacturer": "dm-client",
            "firmware_version": "1.0"}


def setup_device(auth="basic", server_auth=None):
    d = {"id": "{id}", "auth": {"type": auth, "password": "{password}"}}
    if server_auth:
        d["server_auth"] = {"type": server_auth, "password": "{server_password}"}
    return [{"method": "POST", "path": "/api/v1/devices", "body": json.dumps(d), "accept": [409]}]


def cmd(name, cmd_id, target=None, source=None, data=None, fmt=None, more=False, size=None):
    meta = ""
    if fmt or size:
        meta = "<Meta>" + (f"<Format xmlns=\"syncml:metinf\">{fmt}</Format>" if fmt else "") + \
               (f"<Size xmlns=\"syncml:metinf\">{size}</Size>" if size else "") + "</Meta>"
    t = f"<Target><LocURI>{target}</LocURI></Target>" if target else ""
    s = f"<Source><LocURI>{source}</LocURI></Source>" if source else ""
    d = "".join(f"<Data>{x}</Data>" for x in (data if isinstance(data, list) else [data] if data is not None else []))
    return (f"    <{name}><CmdID>{cmd_id}</CmdID><Item>{t}{s}{meta}{d}"
            + ("<MoreData/>" if more else "") + f"</Item></{name}>\n")


SESSIONS = {}


def session(name, title, n, messages, device_kw=None, setup=None, pending=""):
    """`pending`: why the session is not in the corpus yet (written only when named)."""
    SESSIONS[name] = dict(title=title, n=n, messages=messages, device_kw=device_kw or {},
                          setup=setup, pending=pending)


# --- the client side written by hand, the server's answers blessed (--server) --------------
session("X-err-client-dtd-version-505", "Package 1 with VerDTD 1.3 / DM/1.3: the server answers 505 (DTD version not supported)", 1,
        lambda d: [("client", pkg1(d, ver=("1.3", "DM/1.3"))), ("server", stub_server(d))])
session("X-err-client-sends-server-command", "A client sends GetFirmwareUpdate (a server-to-client command): refused (405/406), never executed", 2,
        lambda d: [("client", pkg1(d, cmd("GetFirmwareUpdate", 3, target="./FWUpdate/1/PkgData",
                                         source="http://127.0.0.1:9/x.pkg", data=["DL_URL=http://127.0.0.1:9/x.pkg", "DL_Prompt=0"]))),
                   ("server", stub_server(d))])
session("X-err-client-unknown-command", "A client command the server does not know (an unknown element in SyncBody)", 3,
        lambda d: [("client", pkg1(d, "    <Frobnicate><CmdID>3</CmdID><Item><Source><LocURI>./Vendor/X</LocURI></Source><Data>1</Data></Item></Frobnicate>\n")),
                   ("server", stub_server(d))])
session("X-auth-missing-cred-407", "Package 1 without credentials to a server that wants MD5: 407 with an MD5 challenge", 4,
        lambda d: [("client", pkg1(d, cred=False)), ("server", stub_server(d))],
        device_kw={"auth": "md5"})
session("X-auth-unknown-device", "Package 1 from a device the server does not know (registration closed): refused with a challenge, nothing more", 5,
        lambda d: [("client", pkg1(d)), ("server", stub_server(d))], setup=[])
session("X-err-content-type-415", "Package 1 posted as text/plain: HTTP 415", 6,
        lambda d: [("client", pkg1(d), {"content_type": "text/plain"}), ("server", None, {"http_status": 415})],
)
session("X-err-malformed-xml", "A body that is not well-formed XML: refused (HTTP 400), the server keeps serving", 7,
        lambda d: [("client", pkg1(d).split("<SyncBody>")[0] + "<SyncBody><Alert><CmdID>1</CmdID>\n"),
                   ("server", None, {"http_status": 400})],
)
session("X-err-client-repeated-msgid", "The client's second message repeats MsgID 1: the server must not take it as new", 8,
        lambda d: [("client", pkg1(d)), ("server", stub_server(d)),
                   ("client", message(SERVER_URL, d, status(7, 1, 0, "SyncHdr", 200, d), msg_id=1)),
                   ("server", stub_server(d))])

# --- the server side written by hand, the client's answers blessed (--client) --------------
session("X-srv-client-command-to-device", "A server sends ConfirmFirmwareUpdate and SIMCardChange (client-to-server commands): the device refuses them (405/406)", 21,
        lambda d: [("client", stub_client(d)),
                   ("server", server_reply(d, cmd("ConfirmFirmwareUpdate", 4, source="./FWUpdate/1", data="200")
                                           + cmd("SIMCardChange", 5, source="./Vendor/SIM", data="8944500000000000009"))),
                   ("client", stub_client(d)), ("server", later(d))])
session("X-srv-nested-atomic", "Atomic inside Atomic: the inner one 500, the outer 507, nothing changed", 22,
        lambda d: [("client", stub_client(d)),
                   ("server", server_reply(d, "    <Atomic><CmdID>4</CmdID>\n"
                                           + cmd("Add", 5, target="./Vendor/NestOuter", data="1", fmt="int")
                                           + "    <Atomic><CmdID>6</CmdID>\n"
                                           + cmd("Add", 7, target="./Vendor/NestInner", data="2", fmt="int")
                                           + "    </Atomic>\n    </Atomic>\n"
                                           + cmd("Get", 8, target="./Vendor/NestOuter"))),
                   ("client", stub_client(d)), ("server", later(d))])
session("X-srv-get-in-atomic", "A Get inside Atomic (not allowed): the Atomic fails and is rolled back", 23,
        lambda d: [("client", stub_client(d)),
                   ("server", server_reply(d, "    <Atomic><CmdID>4</CmdID>\n"
                                           + cmd("Add", 5, target="./Vendor/GetInAtomic", data="1", fmt="int")
                                           + cmd("Get", 6, target="./DevInfo/Mod")
                                           + "    </Atomic>\n" + cmd("Get", 7, target="./Vendor/GetInAtomic"))),
                   ("client", stub_client(d)), ("server", later(d))])
session("X-srv-dtd-version", "The server answers in DM 1.3 (VerDTD 1.3): the device ends the session", 24,
        lambda d: [("client", stub_client(d)),
                   ("server", server_reply(d, cmd("Get", 4, target="./DevInfo/Mod"), ver=("1.3", "DM/1.3")))])
session("X-srv-unknown-command", "A server command the device does not know (an unknown element): refused, the session goes on", 25,
        lambda d: [("client", stub_client(d)),
                   ("server", server_reply(d, "    <Frobnicate><CmdID>4</CmdID><Item><Target><LocURI>./DevInfo/Mod</LocURI></Target></Item></Frobnicate>\n"
                                           + cmd("Get", 5, target="./DevInfo/Mod"))),
                   ("client", stub_client(d)), ("server", later(d))])
session("X-auth-server-bad-cred", "A device that wants the server's MD5 credentials gets wrong ones: 401 with a challenge for SyncHdr, no command executed", 26,
        lambda d: [("client", stub_client(d)),
                   ("server", server_reply(d, cmd("Replace", 4, target="./DevInfo/Lang", data="fr-FR"),
                                           cred=cred_xml("md5", "AAAAAAAAAAAAAAAAAAAAAA=="))),
                   ("client", stub_client(d)), ("server", later(d))],
        device_kw={"auth": "md5", "server_password": "corpus-server-secret"})
session("X-srv-large-object-size-mismatch", "A large object whose chunks add up to less than its Meta Size: 213 for the first chunk, 424 at the last, nothing stored", 27,
        lambda d: [("client", stub_client(d)),
                   ("server", server_reply(d, cmd("Add", 4, target="./Vendor/Mismatch", data="a" * 1000, fmt="chr",
                                                  more=True, size=5000), final=False)),
                   ("client", stub_client(d)),
                   ("server", later(d, cmd("Add", 5, target="./Vendor/Mismatch", data="b" * 1000), msg_id=2, msg_ref=2)),
                   ("client", stub_client(d)),
                   ("server", server_reply(d, cmd("Get", 6, target="./Vendor/Mismatch"), msg_id=3)),
                   ("client", stub_client(d)), ("server", later(d, msg_id=4, msg_ref=4))])


def write(name, s, out):
    d = device(s["n"], **s["device_kw"])
    msgs = s["messages"](d["id"])
    folder = out / name
    folder.mkdir(parents=True)
    entries = []
    for i, m in enumerate(msgs, 1):
        side, body = m[0], m[1]
        extra = m[2] if len(m) > 2 else {}
        e = {"from": side, "session": 1}
        if body is not None:
            fname = f"{i:02d}-{side}.xml"
            (folder / fname).write_text(body)
            e["file"] = fname
            e["encoding"] = "xml"
            e["content_type"] = extra.get("content_type", XML_TYPE)
        if "http_status" in extra:
            e["http_status"] = extra["http_status"]
        entries.append(e)
    setup = s["setup"]
    if setup is None:
        setup = setup_device(d["auth"], "md5" if d["server_password"] else None)
    m = {"format": 1, "name": name, "title": s["title"], "recorded_by": "hand",
         "tests": tests_side(s), "device": d, "setup": setup, "message": entries}
    if not setup:
        del m["setup"]
    (folder / "session.toml").write_text(mf.dumps(m))


def tests_side(s):
    """The side a session tests: the peer of the side written by hand (the stubs are
    the tested side's, replaced by --bless)."""
    first = s["messages"](device(s["n"])["id"])
    hand_side = "server" if STUB_NOTE in (first[0][1] or "") else "client"
    return "client" if hand_side == "server" else "server"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "fixtures" / "sessions"))
    ap.add_argument("--directions", action="store_true",
                    help="print NAME server|client: what each hand-written session replays against")
    args = ap.parse_args()
    out = Path(args.out)
    if args.directions:
        for name, s in SESSIONS.items():
            if not s["pending"]:
                print(name, tests_side(s))
        return
    for name, s in SESSIONS.items():
        if args.names and name not in args.names:
            continue
        if s["pending"] and not args.names:
            print(f"{name}: pending ({s['pending']})")
            continue
        if (out / name).exists():
            if not args.force:
                print(f"{name}: exists, left alone")
                continue
            shutil.rmtree(out / name)
        write(name, s, out)
        print(f"{name}: written")


if __name__ == "__main__":
    main()
