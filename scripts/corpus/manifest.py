"""Writes a session manifest (session.toml) back as TOML, in the order of
fixtures/sessions/README.md. Values are strings, integers, booleans, lists of
those, tables ([device], [message.notification]) and arrays of tables."""

import json

ORDER = ["format", "name", "title", "recorded_by", "vary"]
TABLES = ["device", "setup", "download", "message"]


def value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        if "'" not in v and "\n" not in v and all(c >= " " or c == "\t" for c in v) and '"' in v:
            return "'" + v + "'"  # a literal string keeps JSON bodies readable
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r}")


def key(k):
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def table_lines(t):
    lines, subs = [], []
    for k, v in t.items():
        if isinstance(v, dict):
            subs.append((k, v))
        else:
            lines.append(f"{key(k)} = {value(v)}")
    return lines, subs


def dumps(m):
    out = []
    for k in ORDER:
        if k in m:
            out.append(f"{k} = {value(m[k])}")
    for k, v in m.items():
        if k not in ORDER and k not in TABLES:
            out.append(f"{key(k)} = {value(v)}")
    if "device" in m:
        out.append("\n[device]")
        lines, _ = table_lines(m["device"])
        out += lines
    for name in ("setup", "download", "message"):
        for entry in m.get(name, []):
            out.append(f"\n[[{name}]]")
            lines, subs = table_lines(entry)
            out += lines
            for sk, sv in subs:
                out.append(f"[{name}.{sk}]")
                out += table_lines(sv)[0]
    return "\n".join(out) + "\n"
