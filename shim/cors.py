"""CORS: off unless origins are configured (`--cors-origins http://a.example,...`).

Only listed origins get `Access-Control-Allow-Origin`; `*` allows any origin.
A preflight (`OPTIONS` with `Access-Control-Request-Method`) from a listed
origin is answered here, before the API key is checked: browsers never send
credentials on a preflight. Everything else goes through the routes as usual,
so a preflight from an unlisted origin (or with CORS off) gets the router's
405 and no CORS headers, which is what makes the browser refuse.
"""

from __future__ import annotations

from aiohttp import web

ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
# What the openai SDK and Open-WebUI's browser side send.
DEFAULT_ALLOW_HEADERS = "Authorization, Content-Type"
EXPOSE_HEADERS = "X-Whisperd-Worker, Retry-After"
PREFLIGHT_MAX_AGE = "600"


def parse_origins(text: str) -> frozenset[str]:
    """`"http://a.example, https://b.example/"` → the set of origins (no trailing slash)."""
    return frozenset(o.strip().rstrip("/") for o in text.replace(" ", ",").split(",") if o.strip())


class Cors:
    def __init__(self, origins: frozenset[str]) -> None:
        self.origins = origins

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def allowed(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    def preflight(self, request: web.Request) -> web.Response | None:
        """The answer to a preflight from an allowed origin; None for anything else."""
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = request.headers.get("Origin")
        if not self.allowed(origin):
            return None
        requested = request.headers.get("Access-Control-Request-Headers", "").strip()
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin or "",
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": requested or DEFAULT_ALLOW_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            "Vary": "Origin",
        })

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Adds the CORS headers to every answer (errors and event streams included)."""
        origin = request.headers.get("Origin")
        if not self.allowed(origin) or "Access-Control-Allow-Origin" in response.headers:
            return
        response.headers["Access-Control-Allow-Origin"] = origin or ""
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        vary = response.headers.get("Vary")
        response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
