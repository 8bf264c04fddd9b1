"""The page at `/` as HTTP: its files, its headers, its place before the key and the origin rules.

The page in a real browser is `tests/stack/test_page.py`; here the shim's app runs in-process.
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shim.app import build_app
from shim.page import content_security_policy
from tests.service.inprocess_daemon import in_process_daemon
from tests.service.test_shim import ERROR_KEYS, shim_config

PAGE_DIR = Path(__file__).resolve().parents[2] / "shim" / "page"
ASSETS = {"page.css": "text/css", "page.js": "text/javascript", "api.js": "text/javascript",
          "file.js": "text/javascript", "mic.js": "text/javascript", "service.js": "text/javascript",
          "ui.js": "text/javascript", "audio-worklet.js": "text/javascript"}


@asynccontextmanager
async def page_app(socket: str = "/nonexistent/w.sock", **settings) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(shim_config(socket, **settings)))) as client:
        yield client


def csp_directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


async def test_the_page_and_its_headers():
    async with page_app() as web:
        r = await web.get("/")
        body = await r.text()
        host = r.request_info.headers["Host"]
    assert r.status == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/page/page.js">' in body
    csp = csp_directives(r.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"] and csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    assert csp["img-src"] == ["'self'", "data:"] and csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("name, content_type", sorted(ASSETS.items()))
async def test_every_file_is_served_with_its_type_and_the_policy(name, content_type):
    async with page_app() as web:
        r = await web.get(f"/page/{name}")
        body = await r.read()
    assert r.status == 200 and r.headers["Content-Type"].startswith(content_type)
    assert body == (PAGE_DIR / name).read_bytes()
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_the_list_above_is_every_file_of_the_page():
    on_disk = {p.name for p in PAGE_DIR.iterdir() if p.suffix in (".css", ".js")}
    assert on_disk == set(ASSETS)


@pytest.mark.parametrize("path", ["/page/nothing.js", "/page/__init__.py", "/page/..%2F__init__.py",
                                  "/page/%2e%2e/app.py", "/page/"])
async def test_only_the_page_files_are_served(path):
    async with page_app() as web:
        r = await web.get(path)
        body = await r.json()
    assert r.status == 404 and set(body["error"]) == ERROR_KEYS


async def test_the_page_needs_no_key_but_the_api_does():
    async with page_app(api_key="secret") as web:
        assert (await web.get("/")).status == 200
        assert (await web.get("/page/page.js")).status == 200
        r = await web.get("/v1/models")
        assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_api_key"


def test_a_host_that_could_inject_a_directive_gets_no_websocket_source():
    assert "connect-src 'self' ws://[::1]:5000 wss://[::1]:5000;" in content_security_policy("[::1]:5000")
    for host in ("a; script-src *", "a b", "a'", "", None):
        policy = content_security_policy(host)
        assert "connect-src 'self';" in policy and policy.count("script-src") == 1


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_text += data


def test_the_html_has_no_inline_script_or_style_and_names_no_other_origin():
    parser = _Tags()
    parser.feed((PAGE_DIR / "index.html").read_text())
    scripts = [a for t, a in parser.tags if t == "script"]
    assert scripts and all(a.get("src", "").startswith("/page/") for a in scripts)
    assert parser.script_text.strip() == ""
    assert not [t for t, _ in parser.tags if t == "style"]
    assert not [(t, a) for t, a in parser.tags if "style" in a or any(k.startswith("on") for k in a)]
    for _, attrs in parser.tags:
        for name in ("src", "href"):
            if name in attrs:
                assert attrs[name].startswith(("/page/", "data:")), attrs


def test_modules_import_only_each_other_and_css_loads_nothing():
    for name in ASSETS:
        source = (PAGE_DIR / name).read_text()
        for spec in re.findall(r"""\bfrom\s+["']([^"']+)["']""", source):
            assert spec.startswith("./"), (name, spec)
        assert "@import" not in source and "url(" not in source, name


# --- the page's own requests: same origin ------------------------------------------------------


async def test_a_request_from_the_page_itself_passes_the_origin_check():
    async with in_process_daemon() as d, page_app(d.socket) as web:
        host = f"{web.server.host}:{web.server.port}"
        own = await web.get("/v1/models", headers={"Origin": f"http://{host}"})
        other_port = await web.get("/v1/models", headers={"Origin": f"http://{web.server.host}:1"})
        foreign = await web.get("/v1/models", headers={"Origin": "http://evil.example"})
        tls_claimed = await web.get("/v1/models", headers={"Origin": f"https://{host}"})
        behind_tls = await web.get("/v1/models", headers={"Origin": f"https://{host}", "X-Forwarded-Proto": "https"})
        assert own.status == 200 and "Access-Control-Allow-Origin" not in own.headers
        for refused in (other_port, foreign, tls_claimed):
            assert refused.status == 403 and (await refused.json())["error"]["code"] == "origin_not_allowed"
        assert behind_tls.status == 200
