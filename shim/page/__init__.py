"""The page at `/`: a file or the microphone in, words out, the service's state beside them.

    GET /                    index.html
    GET /page/{name}         page.css, the ES modules (*.js) and the AudioWorklet processor

The files live in this package (package data in setup.cfg), are read once at start-up and
served only by name from that list, so no path reaches the file system. The page is open
without the API key (it holds no secret; the person types the key into it) and talks to
this same origin only. Every answer carries a strict Content-Security-Policy: scripts and
styles only from this origin, no inline script or style, no frames, nothing elsewhere.
"""

from __future__ import annotations

import re
from importlib import resources

from aiohttp import web

PREFIX = "/page/"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
# A Host that could smuggle a CSP token (';', a space, a quote) gets no ws: source at all;
# only allowed_hosts = * lets such a header through the guard in the first place.
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _load() -> dict[str, tuple[bytes, str]]:
    files = {}
    for entry in resources.files(__package__).iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in TYPES:
            files[entry.name] = (entry.read_bytes(), TYPES[suffix])
    return files


def content_security_policy(host: str | None) -> str:
    """The page's CSP. `connect-src 'self'` does not cover ws:/wss: in every browser (Safari,
    older Chromium), so the WebSocket's own origin is named from the request's Host."""
    connect = "'self'"
    if host and _PLAIN_HOST.fullmatch(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join((
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        f"connect-src {connect}",
        "img-src 'self' data:",
        "media-src 'self' blob:",  # the chosen file's duration, read by an <audio> element
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))


class Page:
    def __init__(self) -> None:
        self.files = _load()

    def _serve(self, request: web.Request, name: str) -> web.Response:
        if name not in self.files:
            raise web.HTTPNotFound()
        body, content_type = self.files[name]
        return web.Response(body=body, headers={
            "Content-Type": content_type,
            "Content-Security-Policy": content_security_policy(request.headers.get("Host")),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
            "Cache-Control": "no-cache",  # an upgraded package's page shows at the next load
        })

    async def index(self, request: web.Request) -> web.Response:
        return self._serve(request, "index.html")

    async def asset(self, request: web.Request) -> web.Response:
        return self._serve(request, request.match_info["name"])


def is_page_path(path: str) -> bool:
    """Paths served without the API key."""
    return path == "/" or path.startswith(PREFIX)


def add_routes(app: web.Application) -> None:
    page = Page()
    app.router.add_get("/", page.index)
    app.router.add_get(PREFIX + "{name}", page.asset)


__all__ = ["add_routes", "content_security_policy", "is_page_path"]
