#!/usr/bin/env python3
"""Check that packaging/debian/whisperd.conf documents every setting.

Every key of whisperd/daemon/config.py's DAEMON_SETTINGS ([whisperd]),
shim/config.py's SHIM_SETTINGS ([shim]), whisperd/client/config.py's CTL_SETTINGS
([whisperctl]) and whisperd_wyoming/config.py's WYOMING_SETTINGS ([wyoming]) must appear in its section, as `key = value` or as a commented
`# key = value`, under its current name (an old name, which the programs still read,
is reported), and no unknown key may appear. `--template` prints a fresh commented
template from the tables instead (to start a new conffile).
Stdlib only; run from the repository root.
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shim.config import SHIM_SETTINGS
from whisperd.client.config import CTL_SETTINGS
from whisperd.daemon.config import DAEMON_SETTINGS
from whisperd_wyoming.config import WYOMING_SETTINGS

SECTIONS = {"whisperd": DAEMON_SETTINGS, "shim": SHIM_SETTINGS, "whisperctl": CTL_SETTINGS,
            "wyoming": WYOMING_SETTINGS}


def show(s):
    if s.name in ("socket_mode",):
        return oct(s.default)[2:].rjust(4, "0")
    if isinstance(s.default, bool):
        return "true" if s.default else "false"
    if s.default is None:
        return ""
    return str(s.default)


def template():
    for section, settings in SECTIONS.items():
        print(f"[{section}]")
        for s in settings:
            print(f"# {s.help} (env {s.env_name})")
            print(f"#{s.name} = {show(s)}".rstrip())
            print()


def check(path):
    found = {k: set() for k in SECTIONS}
    section = None
    for line in Path(path).read_text().splitlines():
        m = re.match(r"^\[(\w+)\]\s*$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^[#;]?\s*([a-z_]+)\s*=", line)
        if m and section in found:
            found[section].add(m.group(1))
    bad = False
    for section, settings in SECTIONS.items():
        names = {s.name for s in settings}
        old = {alias: s.name for s in settings for alias in s.aliases}
        for alias in sorted(found[section] & set(old)):
            print(f"{path}: [{section}] names {alias}, the old name of {old[alias]}", file=sys.stderr)
            bad = True
        for missing in sorted(names - found[section]):
            print(f"{path}: [{section}] does not document {missing}", file=sys.stderr)
            bad = True
        for extra in sorted(found[section] - names - set(old)):
            print(f"{path}: [{section}] names unknown key {extra}", file=sys.stderr)
            bad = True
    if not bad:
        print(f"{path}: documents all {sum(len(s) for s in SECTIONS.values())} keys")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--template"]:
        template()
    else:
        sys.exit(check(sys.argv[1] if len(sys.argv) > 1 else "packaging/debian/whisperd.conf"))
