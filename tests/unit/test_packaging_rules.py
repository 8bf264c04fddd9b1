"""Issue 15, findings 4, 7 and 8 as they stand in the files: locked dependencies, the units' limits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shim.config import API_KEY_CREDENTIAL

ROOT = Path(__file__).resolve().parents[2]
REQ = ROOT / "requirements"
UNITS = ROOT / "packaging" / "debian"


def names(requirements: Path) -> set[str]:
    out = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.add(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return out


def locked(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from a pip-compile --generate-hashes file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[a-z0-9])", lock.read_text(), flags=re.I):
        m = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if m:
            entries[m.group(1).lower()] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def test_aiohttp_floor_excludes_the_versions_with_published_cves():
    line = next(l for l in (REQ / "runtime.txt").read_text().splitlines() if l.startswith("aiohttp"))
    floor = tuple(int(x) for x in re.search(r">=([\d.]+)", line).group(1).split("."))
    assert floor >= (3, 14, 3), line


@pytest.mark.parametrize("lock, sources", [("runtime.lock", ["runtime.txt"]),
                                           ("dev.lock", ["runtime.txt", "test.txt"])])
def test_every_package_is_pinned_with_its_hashes(lock, sources):
    entries = locked(REQ / lock)
    wanted = set().union(*(names(REQ / s) for s in sources)) - {"torch"}  # torch: the host's build
    assert wanted <= set(entries), wanted - set(entries)
    assert "torch" not in entries
    assert all(hashes for _, hashes in entries.values()), [n for n, (_, h) in entries.items() if not h]


def test_the_two_locks_agree():
    runtime, dev = locked(REQ / "runtime.lock"), locked(REQ / "dev.lock")
    assert {n: runtime[n][0] for n in runtime} == {n: dev[n][0] for n in runtime}


def test_openai_whisper_is_pinned_with_its_hash():
    text = (REQ / "whisper.txt").read_text()
    assert re.search(r"openai-whisper==\S+ \\\n\s+--hash=sha256:[0-9a-f]{64}", text), text


def test_every_install_goes_through_a_lock():
    makefile = (ROOT / "Makefile").read_text()
    rules = (UNITS / "rules").read_text()
    assert "--require-hashes -r requirements/dev.lock" in makefile
    assert "--require-hashes -r requirements/runtime.lock" in rules
    for text in (makefile, rules):
        assert "-r requirements/runtime.txt" not in text and "-r requirements/test.txt" not in text
        assert "--no-deps --require-hashes -r requirements/whisper.txt" in text


def test_test_deb_names_no_mirror_host():
    assert "deb.debian.org" not in (ROOT / "packaging" / "test-deb.sh").read_text()


def unit(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("name", ["whisperd.service", "whisperd-shim.service", "whisperd-wyoming.service"])
def test_every_unit_bounds_descriptors_and_tasks(name):
    settings = unit(name)
    assert int(settings["LimitNOFILE"][0]) >= 1024
    assert 0 < int(settings["TasksMax"][0]) <= 1024


# What the shim's unit locks down, the Wyoming server's must too (it differs in what it runs and why).
HARDENING = ("NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "RestrictAddressFamilies",
             "IPAddressAllow", "IPAddressDeny", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
             "DevicePolicy", "PrivateUsers", "ProtectHostname", "ProtectClock", "ProtectKernelTunables",
             "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc", "ProcSubset",
             "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
             "MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures", "SystemCallFilter",
             "SystemCallErrorNumber", "DynamicUser", "SupplementaryGroups")


def test_the_wyoming_unit_is_hardened_like_the_shims_and_listens_on_loopback():
    shim, wyoming = unit("whisperd-shim.service"), unit("whisperd-wyoming.service")
    assert {k: shim[k] for k in HARDENING} == {k: wyoming[k] for k in HARDENING}
    assert wyoming["IPAddressDeny"] == ["any"] and wyoming["IPAddressAllow"] == ["localhost"]
    assert wyoming["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert wyoming["SupplementaryGroups"] == ["whisperd"] and wyoming["DynamicUser"] == ["yes"]
    assert wyoming["After"] == ["whisperd.service"] and wyoming["Wants"] == ["whisperd.service"]
    assert wyoming["ExecStart"][0].startswith("/opt/venvs/whisperd/bin/whisperd-wyoming ")


def test_the_package_installs_the_wyoming_unit_and_its_program():
    rules = (UNITS / "rules").read_text()
    assert "debian/whisperd-wyoming.service $(PKGROOT)/lib/systemd/system/whisperd-wyoming.service" in rules
    assert re.search(r"dh_installsystemd [^\n]*whisperd-wyoming\.service", rules)
    setup = (ROOT / "setup.cfg").read_text()
    assert "whisperd-wyoming = whisperd_wyoming.__main__:main" in setup
    assert re.search(r"include =(\n    \S+)*\n    whisperd_wyoming\n", setup)


def test_the_daemon_may_not_change_resource_settings_but_may_nice_its_cold_workers():
    filters = unit("whisperd.service")["SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert any("~" in f and "@resources" in f for f in filters), filters
    assert filters[-1] == "setpriority"  # added back after the deny list (cold workers' os.nice)


def test_the_shims_key_comes_as_a_credential_the_socket_group_cannot_read():
    assert unit("whisperd-shim.service")["LoadCredential"] == [API_KEY_CREDENTIAL]


def test_the_conffile_says_that_debug_logs_transcripts():
    text = (UNITS / "whisperd.conf").read_text()
    daemon_section = text.split("[whisperd]", 1)[1].split("[shim]", 1)[0]
    comment = daemon_section.split("#log_level", 1)[0].rsplit("\n\n", 1)[1]
    assert "transcript" in comment, comment
