"""The recorded scenarios of the conformance corpus (fixtures/sessions/).

Each scenario is one session folder: a device provisioned on dm-server with the
admin API, the commands queued for it, and one `dm-client run` (or a daemon woken
by a package #0) recorded by `dm-client --record`. `record.py` plays them; the
hand-written folders (protocol errors, refusals) are listed in CORPUS.md and
live only in fixtures/sessions/.

Placeholders in `commands` and `notify_addr`: `{server}` is the base URL of the
server the exchange runs against (downloads are served under it), `{id}`
the device id. The setup steps written to session.toml keep them as they are.
"""

# A URL that refuses connections (port 9, discard): a download server that is
# unavailable, the same on every machine.
UNAVAILABLE = "http://127.0.0.1:9/fw/unreachable.pkg"

# The Ed25519 public key a device that wants signed packages trusts (its secret
# half was thrown away: nothing in the corpus is signed with it).
FW_KEY = "00miJ3AERXZG+ky3OFfbYZamFYR19jT1sCpp5IqiiH4="


def get(target):
    return {"cmd": "Get", "target": target}


def replace(target, data, fmt="chr"):
    return {"cmd": "Replace", "target": target, "data": data, "format": fmt}


def add(target, data=None, fmt="chr"):
    c = {"cmd": "Add", "target": target, "format": fmt}
    if data is not None:
        c["data"] = data
    return c


def fumo(op, url, correlator, slot="./FUMO/1"):
    """The FUMO way: PkgName, PkgVersion, the URL, then Exec with a Correlator."""
    node = {"Download": "Download", "DownloadAndUpdate": "DownloadAndUpdate"}[op]
    return [
        replace(f"{slot}/PkgName", "corpus-fw"),
        replace(f"{slot}/PkgVersion", "2.0"),
        replace(f"{slot}/{node}/PkgURL", url),
        {"cmd": "Exec", "target": f"{slot}/{node}", "correlator": correlator},
    ]


def ext_chain(url, slot="./FWUpdate/1", get_cmd="GetFirmwareUpdate", apply_cmd="ApplyFirmwareUpdate"):
    """The extension commands in one Sequence: fetch, verify, save, apply."""
    fetch = {"cmd": get_cmd, "target": f"{slot}/PkgData", "source": url,
             "data": [f"DL_URL={url}", "DL_Prompt=0"]}
    return {"cmd": "Sequence", "commands": [
        fetch,
        {"cmd": "VerifyFirmwareUpdate", "source": f"{slot}/PkgData", "target": f"{slot}/PkgStatus"},
        {"cmd": "SaveFirmwareUpdate", "source": f"{slot}/PkgData", "data": "Address=0x0"},
        {"cmd": apply_cmd, "source": f"{slot}/PkgData"},
    ]}


BLOB_70K = "".join(f"corpus large object line {i:05d} .........................\n" for i in range(1150))
BLOB_20K = "".join(f"client large object line {i:05d} ........................\n" for i in range(330))

S = []  # the scenarios, in order


def scenario(name, title, commands=(), **kw):
    s = dict(name=name, title=title, commands=[list(c) for c in commands], auth="basic",
             encoding="xml", mode="run", vary=[], init=[], server_auth=None, note="")
    s.update(kw)
    S.append(s)


# --- sessions, encodings, authentication -----------------------------------------
scenario("X-ses-basic-xml-get", "Client-initiated session, basic credentials, XML; server reads DevInfo (Get, Results)",
         [[get("./DevInfo/Mod"), get("./DevInfo/Man"), get("./DevInfo/DmV")]])
scenario("X-ses-md5-xml-get", "MD5 digest credentials, XML; the server's first-contact challenge answered, then Gets",
         [[get("./DevInfo/Lang"), get("./DevDetail/FwV")]], auth="md5")
scenario("X-ses-hmac-xml-get", "HMAC (x-syncml-hmac) integrity, XML; challenge for a first nonce, then a Get",
         [[get("./DevDetail/FwV")]], auth="hmac")
scenario("X-ses-basic-wbxml-get", "Basic credentials, WBXML both ways",
         [[get("./DevInfo/Mod"), get("./DevDetail/DevTyp")]], encoding="wbxml")
scenario("X-ses-md5-wbxml-replace", "MD5 credentials, WBXML; Add and Replace of a leaf",
         [[add("./Vendor/Corpus-md5w", None, "node"),
           add("./Vendor/Corpus-md5w/Volume", "3", "int"),
           replace("./Vendor/Corpus-md5w/Volume", "7", "int")]], auth="md5", encoding="wbxml")
scenario("X-ses-hmac-wbxml-get", "HMAC integrity, WBXML; Get of an interior node (Format node)",
         [[get("./DevInfo")]], auth="hmac", encoding="wbxml")
scenario("X-ses-server-auth-md5", "Both sides authenticate with MD5: the server proves itself before the device executes its commands",
         [[get("./DevInfo/Mod")]], auth="md5", server_auth="md5")
scenario("X-ses-server-auth-hmac", "Both sides authenticate with HMAC",
         [[get("./DevDetail/FwV")]], auth="hmac", server_auth="hmac")
scenario("X-auth-failed-basic", "Failed authentication: the device's basic password is wrong; 401 with a challenge, retried, then given up",
         [], client_password="wrong-password")
scenario("X-auth-failed-md5", "Failed authentication: MD5 with a wrong password; the server challenges until the device gives up",
         [], auth="md5", client_password="wrong-password")
scenario("X-ses-no-commands", "A session with nothing queued: package 2 holds only Status and the inventory Gets",
         [])

# --- the commands --------------------------------------------------------------------
scenario("X-cmd-add-replace-get-delete", "Add (interior and leaf), Replace, Get, Delete",
         [[add("./Vendor/Corpus", None, "node"), add("./Vendor/Corpus/Note", "hello", "chr"),
           replace("./Vendor/Corpus/Note", "bye"), get("./Vendor/Corpus/Note"),
           {"cmd": "Delete", "target": "./Vendor/Corpus/Note"}]])
scenario("X-cmd-binary-data-xml", "Binary data (bytes XML cannot hold) added to a bin node in an XML session: sent as base64 text with Format b64, read back the same way",
         [[{"cmd": "Add", "target": "./Vendor/Blob", "format": "bin", "encoding": "b64",
            "data": "AAH//gB4eXo="}, get("./Vendor/Blob")]])
scenario("X-cmd-copy", "Copy of a leaf to a new node, read back",
         [[add("./Vendor/CopySrc", "copied value", "chr"),
           {"cmd": "Copy", "target": "./Vendor/CopyDst", "source": "./Vendor/CopySrc"},
           get("./Vendor/CopyDst")]])
scenario("X-cmd-get-properties", "Get of node properties (?prop=ACL, Format, Type) and a ?list=Struct tree",
         [[get("./DevInfo/Mod?prop=Format"), get("./DevInfo?prop=ACL"), get("./FUMO?list=Struct")]])
scenario("X-cmd-errors", "Commands that fail: Get and Replace of missing nodes (404), Add of an existing node (418), Delete of the root (405)",
         [[get("./Vendor/Missing"), replace("./Vendor/Missing", "x"), add("./DevInfo/Mod", "y"),
           {"cmd": "Delete", "target": "."}]])
scenario("X-cmd-exec-permission-denied", "Exec of a node whose ACL grants no Exec: permission denied (425)",
         [[{"cmd": "Exec", "target": "./DevInfo/Mod"}]])
scenario("X-cmd-atomic-ok", "Atomic whose commands all succeed (200 for each and for the Atomic)",
         [[{"cmd": "Atomic", "commands": [add("./Vendor/AtomicOk", None, "node"),
                                          add("./Vendor/AtomicOk/A", "1", "int"),
                                          add("./Vendor/AtomicOk/B", "2", "int")]},
           get("./Vendor/AtomicOk/B")]])
scenario("X-cmd-atomic-rollback", "Atomic rolled back: one command fails (404), the rest is undone (216), the Atomic answers 507",
         [[{"cmd": "Atomic", "commands": [add("./Vendor/AtomicBad", None, "node"),
                                          add("./Vendor/AtomicBad/A", "1", "int"),
                                          replace("./Vendor/NoSuchNode", "x")]},
           get("./Vendor/AtomicBad")]])
scenario("X-cmd-sequence", "Sequence run in order: Add, Replace, Get",
         [[{"cmd": "Sequence", "commands": [add("./Vendor/Seq", None, "node"),
                                            add("./Vendor/Seq/Level", "1", "int"),
                                            replace("./Vendor/Seq/Level", "2", "int"),
                                            get("./Vendor/Seq/Level")]}]])
scenario("X-cmd-sequence-failure", "Sequence with a failing command in the middle (404): the commands after it are not executed (215)",
         [[{"cmd": "Sequence", "commands": [add("./Vendor/SeqF", "1", "int"),
                                            replace("./Vendor/NoSuchNode", "x"),
                                            get("./Vendor/SeqF")]}]])

# --- user interaction ----------------------------------------------------------------
scenario("X-ui-1100-display", "UI alert 1100: display a message",
         [[{"cmd": "Alert", "code": 1100, "items": [{"data": "MINDT=5"}, {"data": "Maintenance tonight"}]}]])
scenario("X-ui-1101-confirm-yes", "UI alert 1101: confirm, default response yes (200)",
         [[{"cmd": "Alert", "code": 1101, "items": [{"data": "MINDT=10&DR=1"}, {"data": "Install the update?"}]}]])
scenario("X-ui-1101-confirm-no", "UI alert 1101: confirm without a default: rejected (304)",
         [[{"cmd": "Alert", "code": 1101, "items": [{"data": "MAXDT=10"}, {"data": "Reset the device?"}]}]])
scenario("X-ui-1102-text-input", "UI alert 1102: text input, the default text returned in the Status",
         [[{"cmd": "Alert", "code": 1102, "items": [{"data": "MAXDT=30&DR=Jane+Doe&IT=A&ET=A&MAXLEN=20"}, {"data": "Your name?"}]}]])
scenario("X-ui-1103-single-choice", "UI alert 1103: single choice",
         [[{"cmd": "Alert", "code": 1103, "items": [{"data": "DR=2"}, {"data": "Pick a colour"},
                                                    {"data": "Red"}, {"data": "Green"}, {"data": "Blue"}]}]])
scenario("X-ui-1104-multiple-choice", "UI alert 1104: multiple choice",
         [[{"cmd": "Alert", "code": 1104, "items": [{"data": "DR=1,3"}, {"data": "Channels"},
                                                    {"data": "News"}, {"data": "Sport"}, {"data": "Weather"}]}]])

# --- multiple messages and large objects ---------------------------------------------
scenario("X-multi-message-server", "Package 2 over several messages (more commands than one message of the MaxMsgSize in force holds); Alert 1222 asks for the rest",
         [[add(f"./Vendor/M{i:02d}", "v" * 300, "chr") for i in range(60)]])
scenario("X-multi-message-client", "Package 3 over several messages (Results larger than the server's MaxMsgSize); the server asks for more with Alert 1222",
         [[add(f"./Vendor/R{i:02d}", "r" * 800, "chr") for i in range(20)] +
          [get(f"./Vendor/R{i:02d}") for i in range(20)]])
scenario("X-large-object-to-client", "Large object from the server: a 70 KB Add in chunks with MoreData and Meta Size, each answered 213, the last 200",
         [[add("./Vendor/BigIn", BLOB_70K, "chr")]])
scenario("X-large-object-to-server", "Large object from the client: a 20 KB Results in chunks (server MaxMsgSize 8 KiB)",
         [[add("./Vendor/BigOut", BLOB_20K, "chr"), get("./Vendor/BigOut")]])

# --- package #0 -----------------------------------------------------------------------
scenario("X-pkg0-notify-basic", "Server-initiated session: package #0 over UDP (digest with the server password), Alert 1200, a Get",
         [[get("./DevInfo/Mod")]], mode="daemon", server_auth="md5", auth="md5")
scenario("X-pkg0-notify-background-wbxml", "Package #0 with ui-mode background, WBXML session, Replace",
         [[add("./Vendor/Pushed", "1", "int")]], mode="daemon", server_auth="md5", auth="md5",
         encoding="wbxml", notify_body='{"ui_mode": "background"}')

# --- the extension commands ----------------------------------------------------------
scenario("X-ext-firmware-update-ok", "GetFirmwareUpdate, VerifyFirmwareUpdate, SaveFirmwareUpdate, ApplyFirmwareUpdate in a Sequence; after the reboot ConfirmFirmwareUpdate 200",
         [[ext_chain("{server}/fw/good.pkg")]])
scenario("X-ext-download-update-ok", "The generic Download and Update commands; the outcome confirmed after the reboot",
         [[ext_chain("{server}/fw/good.pkg", get_cmd="Download", apply_cmd="Update")]])
scenario("X-ext-get-corrupted-package", "GetFirmwareUpdate of a corrupted package fails (500), the Sequence skips VerifyFirmwareUpdate (215); PkgStatus holds the 402 verdict",
         [[{"cmd": "Sequence", "commands": [
             {"cmd": "GetFirmwareUpdate", "target": "./FWUpdate/1/PkgData", "source": "{server}/fw/corrupt.pkg",
              "data": ["DL_URL={server}/fw/corrupt.pkg", "DL_Prompt=0"]},
             {"cmd": "VerifyFirmwareUpdate", "source": "./FWUpdate/1/PkgData", "target": "./FWUpdate/1/PkgStatus"}]},
           get("./FWUpdate/1/PkgStatus")]])
scenario("X-ext-apply-update-failed", "ApplyFirmwareUpdate of an image that fails its boot check: rolled back, ConfirmFirmwareUpdate 410",
         [[ext_chain("{server}/fw/bad-firmware.pkg")]])
scenario("X-ext-sim-card-change", "SIMCardChange: the device reports a new SIM (ICCID) in package 1",
         [], iccid_before="8944500000000000001", iccid="8944500000000000002")

# --- FUMO -----------------------------------------------------------------------------
scenario("X-fumo-download-and-update-200", "FUMO DownloadAndUpdate: Exec 202, download, update, Alert 1226 result 200 after the reboot",
         [fumo("DownloadAndUpdate", "{server}/fw/good.pkg", "corr-dau-200")])
scenario("X-fumo-download-200", "FUMO Download alone: Exec 202, Alert 1226 (downloaded) result 200, State 40",
         [fumo("Download", "{server}/fw/good.pkg", "corr-dl-200") + [get("./FUMO/1/State")]])
scenario("X-fumo-update-pushed-200", "FUMO Update of a package pushed into Update/PkgData (b64): Alert 1226 result 200",
         [], push_update="good.pkg", correlator="corr-upd-200")
scenario("X-fumo-402-corrupted", "FUMO DownloadAndUpdate of a corrupted package: result 402",
         [fumo("DownloadAndUpdate", "{server}/fw/corrupt.pkg", "corr-402")])
scenario("X-fumo-403-device-mismatch", "FUMO DownloadAndUpdate of a package for another model: result 403",
         [fumo("DownloadAndUpdate", "{server}/fw/other-model.pkg", "corr-403")])
scenario("X-fumo-404-failed-validation", "FUMO DownloadAndUpdate of an unsigned package on a device that requires signatures: result 404",
         [fumo("DownloadAndUpdate", "{server}/fw/good.pkg", "corr-404")], init=["--fw-key", FW_KEY], fw_key=FW_KEY)
scenario("X-fumo-410-update-failed", "FUMO DownloadAndUpdate of an image that fails its boot check: rolled back, result 410",
         [fumo("DownloadAndUpdate", "{server}/fw/bad-firmware.pkg", "corr-410")])
scenario("X-fumo-411-bad-url", "FUMO Download of a URL that names nothing (HTTP 404): result 411",
         [fumo("Download", "{server}/fw/missing.pkg", "corr-411")])
scenario("X-fumo-412-server-unavailable", "FUMO Download from a server that refuses connections: result 412",
         [fumo("Download", UNAVAILABLE, "corr-412")])
scenario("X-fumo-500-download-server-error", "FUMO Download from a server that answers HTTP 500: result 500 (download server error), State 20",
         [fumo("Download", "{server}/fw/server-error.pkg", "corr-500") + [get("./FUMO/1/State")]])
scenario("X-fumo-update-without-package", "FUMO Exec of Update with no package in the slot: refused (405), no report",
         [[replace("./FUMO/1/PkgName", "corpus-fw"),
           {"cmd": "Exec", "target": "./FUMO/1/Update", "correlator": "corr-upd-none"}]])
