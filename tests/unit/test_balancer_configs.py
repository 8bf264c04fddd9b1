"""The shipped balancer configs agree with the shim's settings and the units (issue 18).

Numbers that must match live in three places - the shim's defaults, the HAProxy and nginx
examples, the systemd unit - so a change to one that forgets the others fails here. The
configs themselves run in `make test-scale`.
"""

from __future__ import annotations

import re
from pathlib import Path

from shim.config import SHIM_SETTINGS
from testing.balancer import SHIPPED_CONFIG, Backend, render_config

ROOT = Path(__file__).resolve().parents[2]
NGINX = ROOT / "packaging" / "nginx" / "whisperd.conf"
DEFAULTS = {s.name: s.default for s in SHIM_SETTINGS}


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[unit]


def haproxy_setting(key: str) -> str:
    line = next(line for line in SHIPPED_CONFIG.read_text().splitlines() if line.strip().startswith(key + " "))
    return line.split()[len(key.split())]


def default_server() -> list[str]:
    return next(line for line in SHIPPED_CONFIG.read_text().splitlines()
                if line.strip().startswith("default-server check inter")).split()


def test_haproxy_checks_health_and_balances_by_connections():
    text = SHIPPED_CONFIG.read_text()
    assert "balance leastconn" in text
    assert "http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost" in text
    assert "http-check expect status 200" in text


def test_the_drain_grace_outlasts_haproxys_way_to_notice():
    words = default_server()
    inter, fall = seconds(words[words.index("inter") + 1]), int(words[words.index("fall") + 1])
    assert DEFAULTS["drain_grace"] > inter * fall


def test_haproxy_waits_as_long_as_the_shim_does():
    assert seconds(haproxy_setting("timeout server")) >= DEFAULTS["transcript_timeout"]
    assert seconds(haproxy_setting("timeout client")) >= DEFAULTS["upload_timeout"]
    assert seconds(haproxy_setting("timeout tunnel")) >= 3600


def test_both_balancers_refuse_what_the_shim_would_refuse_and_nothing_less():
    limit = int(re.search(r"req\.hdr_val\(content-length\) gt (\d+)", SHIPPED_CONFIG.read_text()).group(1))
    assert limit == DEFAULTS["max_upload_bytes"]
    nginx = re.search(r"client_max_body_size (\d+)m;", NGINX.read_text()).group(1)
    assert int(nginx) << 20 == DEFAULTS["max_upload_bytes"]


def test_nginx_passes_websockets_and_waits_for_long_files():
    text = NGINX.read_text()
    assert "least_conn;" in text and "location = /v1/realtime" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert seconds(re.search(r"proxy_read_timeout (\w+);", text).group(1)) >= DEFAULTS["transcript_timeout"]


def test_the_shim_unit_may_take_the_whole_drain():
    unit = (ROOT / "packaging" / "debian" / "whisperd-shim.service").read_text()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))
    assert stop > DEFAULTS["drain_grace"] + DEFAULTS["drain_timeout"]


def test_rendering_for_loopback_changes_only_addresses_and_ports():
    shipped = SHIPPED_CONFIG.read_text()
    backends = [Backend(7001 + i, 7101 + i, 7201 + i) for i in range(3)]
    rendered = render_config(shipped, http_port=7000, wyoming_port=7300, backends=backends,
                             stats_socket="/tmp/s.sock")
    changed = [(a, b) for a, b in zip(shipped.splitlines(), rendered.splitlines()) if a != b]
    assert {a.split()[0] for a, _ in changed} == {"bind", "server", "stats", "log"}
    assert "    server host2 127.0.0.1:7002 agent-port 7102" in rendered.splitlines()
    assert "    server host3 127.0.0.1:7203 port 7003" in rendered.splitlines()
    assert "bind 127.0.0.1:7000" in rendered and "bind 127.0.0.1:7300" in rendered
    assert "192.0.2." not in rendered
