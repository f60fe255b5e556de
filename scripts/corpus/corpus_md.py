#!/usr/bin/env python3
"""Writes fixtures/sessions/CORPUS.md: the table of the corpus, from scenarios.py
(recorded) and hand.py (hand-written). Run after record-corpus.sh or hand.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hand  # noqa: E402
import scenarios  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = ROOT / "fixtures" / "sessions"

INTRO = """# The conformance corpus

Every folder here is one exchange in the format of [README.md](README.md);
`dm-conformance replay` plays them against a server (`--server`) or a client
(`--client`). This table is written by `scripts/corpus/corpus_md.py`.

**Test case ids.** The folders were to be named after the OMA DM enabler test
specification's test case ids (OMA-ETS-DM) where one corresponds. The ETS is not
among the OMA DM documents transcribed in the public repository
MarcoRosso/OMA-DM.Documents (it holds the DM 1.2 protocol, representation,
security, notification, standardized objects, tree and description, and FUMO
specifications, no test specification), and no other source at hand gives the
ids as written, so no folder claims one: every folder has the `X-` prefix of a
case of this project's. Renaming a folder after its ETS id, once the ETS is at
hand, needs only the folder and its `name` changed.

**How a folder is made.**
- *recorded*: `scripts/record-corpus.sh` provisions the device on a fresh
  `dm-server` (SQLite, MaxMsgSize 8 KiB), queues the commands with the admin API,
  runs `dm-client --record` (`run`, or `daemon` woken by a package #0) and copies
  the client's recording here, with `[[setup]]` = the admin API calls it made
  (placeholders `{id}`, `{password}`, `{server_password}`, `{udp}`). Firmware
  packages are built by the script from fixed images (the same bytes every run);
  download URLs point at the recorded server (`{server}/fw/...`), whose files the
  replay serves from `[[download]]`. Replays both ways.
- *hand + blessed*: `scripts/corpus/hand.py` writes the replaying side's messages
  by hand, with stubs for the peer's; `dm-conformance replay --bless` put our
  implementation's answers in their place, each reviewed against PROTOCOL.md.
  Replays only against the side it tests (`scripts/corpus/sessions.sh server|client`).

**Replaying.**
```sh
dm-conformance replay $(scripts/corpus/sessions.sh server) --server http://127.0.0.1:8080/dm --admin-token "$T"
dm-conformance replay $(scripts/corpus/sessions.sh client) --client "$(cat scripts/corpus/client-command.txt)"
```

| folder | ETS id | covers | made | replays against |
|---|---|---|---|---|
"""


def main():
    rows = []
    directions = {}
    for name, s in hand.SESSIONS.items():
        msgs = s["messages"](hand.device(s["n"])["id"])
        hand_side = "server" if hand.STUB_NOTE in (msgs[0][1] or "") else "client"
        directions[name] = "client" if hand_side == "server" else "server"
    for s in scenarios.S:
        state = "" if (SESSIONS / s["name"]).is_dir() else " (not recorded yet)"
        rows.append(f"| {s['name']} | none | {s['title']} | recorded{state} | server, client |")
    pending = []
    for name, s in hand.SESSIONS.items():
        if s["pending"]:
            pending.append(f"- `{name}`: {s['title']}. Blocked: {s['pending']}.")
            continue
        side = "client" if directions[name] == "server" else "server"
        rows.append(f"| {name} | none | {s['title']} | hand ({side} side) + blessed | {directions[name]} |")
    text = INTRO + "\n".join(rows) + "\n"
    if pending:
        text += "\nWritten but not in the corpus yet (scripts/corpus/hand.py NAME writes them):\n\n" + "\n".join(pending) + "\n"
    (SESSIONS / "CORPUS.md").write_text(text)


if __name__ == "__main__":
    main()
