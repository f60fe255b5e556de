#!/usr/bin/env python3
"""Independent authentication vectors, computed with Python's hashlib and struct only.

syncml-core's tests run this script and compare its answers with their own, so the
Rust code is checked against a second implementation written from the specification
(PROTOCOL.md sections 5 and 6), not against values it produced itself.

Usage: auth-vectors.py BODY_FILE...   (the HMAC vectors cover each file's exact bytes)

One vector per line, fields separated by tabs; strings and bytes are hex so that any
value survives:
  basic  user password                                   data
  md5    user password nonce                             data
  hmac   user password nonce body_path                   header
  pkg0   server_id password nonce version ui initiator session_id vendor   message
"""

import base64
import hashlib
import struct
import sys


def h(b: bytes) -> bytes:
    return hashlib.md5(b).digest()


def b64(b: bytes) -> bytes:
    return base64.b64encode(b)


def key(name: bytes, password: bytes) -> bytes:
    return b64(h(name + b":" + password))


def hx(b: bytes) -> str:
    return b.hex()


# Users, passwords and nonces chosen to reach the corners: the specification's own
# example, an empty password, a colon in the password, non-ASCII text, binary nonces,
# an empty nonce and the package #0 reset nonce.
CREDENTIALS = [
    (b"Bruce2", b"OhBehave", b"Nonce"),
    (b"IMEI:493005100592800", b"", bytes(range(16))),
    ("\u00e9t\u00e9".encode(), "p\u00e4ss:w\u00f6rd".encode(), b"\x00\xff" * 8),
    (b"a", b"b", b""),
    (b"dm.example.com", b"server-secret", b"0x00000000"),
]


def main() -> None:
    out = []
    for user, password, nonce in CREDENTIALS:
        out.append(["basic", hx(user), hx(password), b64(user + b":" + password).decode()])
        md5 = b64(h(key(user, password) + b":" + nonce)).decode()
        out.append(["md5", hx(user), hx(password), hx(nonce), md5])
        for path in sys.argv[1:]:
            with open(path, "rb") as f:
                body = f.read()
            mac = b64(h(key(user, password) + b":" + nonce + b":" + b64(h(body)))).decode()
            header = f'algorithm=MD5, username="{user.decode()}", mac={mac}'
            out.append(["hmac", hx(user), hx(password), hx(nonce), path, hx(header.encode())])

    notifications = [
        # server id, version, ui mode, initiator, session id, vendor bytes
        (b"dm.example.com", 11, 0, 1, 1, b""),
        (b"dm.example.com", 11, 1, 1, 0xFFFF, b"\x01\x02vendor"),
        (b"S", 12, 2, 0, 0x00A1, b""),
        (b"x" * 255, 11, 3, 1, 0x1234, bytes(range(256))),
        # signed with the reset nonce, the ASCII text 0x00000000 (last credential row)
        (b"dm.example.com", 11, 1, 1, 0x0BAD, b""),
    ]
    assert len(notifications) == len(CREDENTIALS)
    for (server_id, version, ui, initiator, session_id, vendor), (_, password, nonce) in zip(
        notifications, CREDENTIALS
    ):
        header = (version << 54) | (ui << 52) | (initiator << 51) | (session_id << 8) | len(server_id)
        trigger = struct.pack(">Q", header) + server_id + vendor
        digest = h(key(server_id, password) + b":" + nonce + b":" + b64(h(trigger)))
        out.append(
            ["pkg0", hx(server_id), hx(password), hx(nonce), str(version), str(ui),
             str(initiator), str(session_id), hx(vendor), hx(digest + trigger)]
        )
    for row in out:
        print("\t".join(row))


if __name__ == "__main__":
    main()
