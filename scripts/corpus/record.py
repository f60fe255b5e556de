#!/usr/bin/env python3
"""Records the corpus's recorded sessions (see scenarios.py) with dm-server and
dm-client, and writes them to fixtures/sessions/<name>/.

Run through scripts/record-corpus.sh, which builds the binaries first:

    scripts/record-corpus.sh                 # every scenario
    scripts/record-corpus.sh X-cmd-copy ...  # only these
    scripts/record-corpus.sh --dry-run       # play them without recording (checks)

One dm-server (SQLite in a temporary folder, MaxMsgSize 8 KiB so that a client's
large Results travel in chunks) serves every scenario; each scenario has its own
device id and its own client state folder. Firmware packages are built with
`syncml package build` from fixed images (the bytes are the same on every run) and
served by a small HTTP server on another port; in the recording its URLs are
rewritten to the DM server's URL, which a replay serves the [[download]] files
under. Folders are replaced whole; nothing else in fixtures/sessions/ is touched.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenarios  # noqa: E402
import manifest as mf  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "corpus-admin-token-0123456789"
PASSWORD = "corpus-secret"
SERVER_PASSWORD = "corpus-server-secret"


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def device_id(n):
    return f"IMEI:35400000000{n:04d}"


# Paths of the download server that answer with an error status (and this body).
ERRORS = {"/fw/server-error.pkg": (500, b"download server error\n")}


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path in ERRORS:
            status, body = ERRORS[self.path]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


def build_packages(syncml, www):
    fw = www / "fw"
    fw.mkdir(parents=True)
    img = www.parent / "img"
    img.mkdir()
    good = img / "good.bin"
    good.write_bytes(b"".join(b"CORPUS FIRMWARE 2.0 block %04d\n" % i for i in range(48)))
    bad = img / "bad.bin"
    bad.write_bytes(b"BAD-FIRMWARE " + good.read_bytes())

    def build(out, image, model="dmrs-sim"):
        subprocess.run([syncml, "package", "build", "--model", model, "--to-version", "2.0",
                        "--full", str(image), "-o", str(fw / out)], check=True,
                       stdout=subprocess.DEVNULL)

    build("good.pkg", good)
    build("other-model.pkg", good, model="corpus-other-model")
    build("bad-firmware.pkg", bad)
    raw = bytearray((fw / "good.pkg").read_bytes())
    raw[-5] ^= 0xFF  # a payload byte: CRC-32 and SHA-256 no longer match
    (fw / "corrupt.pkg").write_bytes(bytes(raw))


def fill(text, values):
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body, accept=()):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=body.encode() if body is not None else None)
        req.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            if e.code in accept:
                return e.code, e.read()
            raise SystemExit(f"{method} {path}: HTTP {e.code} {e.read()[:300]!r}")


def setup_steps(s, www_dir):
    """The admin API calls of a scenario, with placeholders."""
    steps = []
    dev = {"id": "{id}"}
    client_pw = "{password}" if "client_password" not in s else PASSWORD
    dev["auth"] = {"type": s["auth"], "password": client_pw}
    if s["server_auth"]:
        dev["server_auth"] = {"type": s["server_auth"], "password": "{server_password}"}
    if s["mode"] == "daemon":
        dev["notify_addr"] = "udp://{udp}"
    steps.append({"method": "POST", "path": "/api/v1/devices", "body": json.dumps(dev), "accept": [409]})
    batches = list(s["commands"])
    if s.get("push_update"):
        pkg = (www_dir / "fw" / s["push_update"]).read_bytes()
        batches.append([
            {"cmd": "Replace", "target": "./FUMO/1/PkgName", "data": "corpus-fw", "format": "chr"},
            {"cmd": "Replace", "target": "./FUMO/1/Update/PkgData", "data": base64.b64encode(pkg).decode(),
             "format": "b64", "type": "application/octet-stream"},
            {"cmd": "Exec", "target": "./FUMO/1/Update", "correlator": s["correlator"]},
        ])
    for k, cmds in enumerate(batches, 1):
        body = {"devices": ["{id}"], "request_id": f"corpus-{s['name']}-{k}", "commands": cmds}
        steps.append({"method": "POST", "path": "/api/v1/commands", "body": json.dumps(body)})
    if s["mode"] == "daemon":
        steps.append({"method": "POST", "path": "/api/v1/devices/{id}/notify",
                      "body": s.get("notify_body", "{}")})
    return steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--dry-run", action="store_true", help="play the scenarios without recording")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--out", default=str(ROOT / "fixtures" / "sessions"))
    args = ap.parse_args()
    bins = ROOT / "target" / "debug"
    server_bin, client_bin, syncml = bins / "dm-server", bins / "dm-client", bins / "syncml"
    chosen = [s for s in scenarios.S if not args.names or s["name"] in args.names]
    unknown = set(args.names) - {s["name"] for s in scenarios.S}
    if unknown:
        raise SystemExit(f"unknown scenarios: {sorted(unknown)}")

    tmp = Path(tempfile.mkdtemp(prefix="corpus-"))
    www = tmp / "www"
    build_packages(syncml, www)
    static_port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", static_port), partial(Quiet, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    static = f"http://127.0.0.1:{static_port}"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp / "server.toml").write_text(
        f'listen = "127.0.0.1:{port}"\ndata_dir = "{tmp / "data"}"\n'
        + (ROOT / "fixtures" / "sessions" / "dm-server.toml").read_text())
    env = dict(os.environ, DM_SERVER_ADMIN_TOKEN=ADMIN_TOKEN)
    cmd = [str(server_bin), "serve", "--config", str(tmp / "server.toml")]
    server = subprocess.Popen(cmd, env=env, stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        api = Api(base)
        failures = []
        for n, s in enumerate(scenarios.S, 1):
            if s not in chosen:
                continue
            rc = run_scenario(n, s, tmp, api, base, static, client_bin, args)
            if rc is None:
                failures.append(s["name"])
        print(f"{len(chosen) - len(failures)} recorded, {len(failures)} failed")
        if failures:
            print("failed: " + " ".join(failures))
            return 1
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        httpd.shutdown()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run_scenario(n, s, tmp, api, base, static, client_bin, args):
    name = s["name"]
    dev = device_id(n)
    client_pw = s.get("client_password", PASSWORD)
    udp_port = free_port(socket.SOCK_DGRAM) if s["mode"] == "daemon" else 0
    values = {"id": dev, "password": PASSWORD, "server_password": SERVER_PASSWORD,
              "server": static, "udp": f"127.0.0.1:{udp_port}"}
    steps = setup_steps(s, tmp / "www")
    state = tmp / "state" / name
    rec = tmp / "rec" / name
    rec.mkdir(parents=True)
    init = [str(client_bin), "--state", str(state), "init", "--server", base + "/dm",
            "--device-id", dev, "--auth", s["auth"], "--password", client_pw,
            "--encoding", s["encoding"]] + s["init"]
    if s["server_auth"]:
        init += ["--server-password", SERVER_PASSWORD]
    if s["mode"] == "daemon":
        init += ["--udp", values["udp"], "--poll-interval", "0"]
    if s.get("iccid_before"):
        init += ["--iccid", s["iccid_before"]]
    subprocess.run(init, check=True, stdout=subprocess.DEVNULL)
    if s.get("iccid_before"):
        # The device starts once with the old SIM, then with the new one.
        subprocess.run([str(client_bin), "--state", str(state), "status"], check=True,
                       stdout=subprocess.DEVNULL)
        cfg = state / "client.toml"
        cfg.write_text(cfg.read_text().replace(s["iccid_before"], s["iccid"]))
    record = [] if args.dry_run else ["--record", str(rec)]
    log = open(tmp / f"client-{name}.log", "w")
    daemon = None
    if s["mode"] == "daemon":
        for st in steps[:-1]:
            api.call(st["method"], fill(st["path"], values), fill(st["body"], values), st.get("accept", ()))
        daemon = subprocess.Popen([str(client_bin), *record, "--state", str(state), "--log", "info",
                                   "daemon", "--max-sessions", "1"], stdout=log, stderr=log)
        time.sleep(1.0)
        last = steps[-1]
        api.call(last["method"], fill(last["path"], values), fill(last["body"], values))
        try:
            rc = daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = -1
    else:
        for st in steps:
            api.call(st["method"], fill(st["path"], values), fill(st["body"], values), st.get("accept", ()))
        rc = subprocess.run([str(client_bin), *record, "--state", str(state), "--log", "info", "run"],
                            stdout=log, stderr=log, timeout=120).returncode
    log.close()
    print(f"{name}: client exit {rc}")
    if args.dry_run:
        return rc
    made = [p for p in rec.iterdir() if p.is_dir()]
    if len(made) != 1:
        print(f"  {name}: expected one recording in {rec}, found {len(made)}")
        return None
    out = Path(args.out) / name
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(made[0], out)
    finish(out, s, steps, static, base)
    return rc


def finish(out, s, steps, static, base):
    """Names the folder's manifest, writes its setup, and turns the download
    server's URL into the DM server's (a replay serves [[download]] under it)."""
    for f in out.iterdir():
        if f.suffix == ".xml":
            f.write_text(f.read_text().replace(static, base))
    path = out / "session.toml"
    m = tomllib.loads(path.read_text())
    m["name"] = s["name"]
    m["title"] = s["title"]
    if s["vary"]:
        m["vary"] = s["vary"]
    dev = m.setdefault("device", {})
    for key in ("iccid", "iccid_before", "fw_key"):
        if s.get(key):
            dev[key] = s[key]
    m["setup"] = steps
    for d in m.get("download", []):
        d["path"] = d["path"].replace(static, "")
    # A download the server refused is not recorded by the client: the replay must
    # refuse it the same way.
    for p, (status, body) in ERRORS.items():
        used = any(p in f.read_text() for f in out.iterdir() if f.suffix == ".xml")
        if used and not any(d["path"] == p for d in m.get("download", [])):
            name = "dl-" + p.rsplit("/", 1)[-1]
            (out / name).write_bytes(body)
            m.setdefault("download", []).append({"path": p, "file": name, "status": status})
    path.write_text(mf.dumps(m))


if __name__ == "__main__":
    sys.exit(main())
