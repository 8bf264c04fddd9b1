"""A Hugging Face hub on loopback, for `whisperctl models pull` with `HF_ENDPOINT` pointed at it.

It answers the routes huggingface_hub 2.4 calls for a pull, as the real hub answers them:

- `GET /api/models/{org}/{name}[/revision/{rev}]` (`HfApi.model_info`): the commit as `sha`,
  the files as `siblings`; with `?blobs=True` (files_metadata) each one's `size`, `blobId`
  (its git blob id) and, for LFS files, `lfs: {sha256, size, pointerSize}`;
- `HEAD|GET /{org}/{name}/resolve/{rev}/{file}` (`hf_hub_download`): a small file directly,
  with `ETag` (its git blob id) and `X-Repo-Commit`; an LFS file as a 302 to a second origin
  (the "CDN", another port) with `X-Linked-Etag` (its sha256) and `X-Linked-Size`, so
  huggingface_hub stops at the redirect and downloads from there;
- `GET /lfs/{sha256}` on the CDN origin, with `Range` requests answered 206.
  Faults for the tests: `corrupt` (one byte flipped, same size), `drop` (the connection
  closes halfway through the body, on the next N requests).

Every repository holds the same CTranslate2 files (`files_dir`, the bundled tiny.en),
under whichever names the tests publish. It runs in a thread with its own event loop, so
synchronous tests (and whisperctl as a child process) can use it.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the one commit every repository is at
LFS_FILES = ("model.bin",)  # what the real CTranslate2 repositories keep in LFS


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Faults:
    corrupt: bool = False
    drops: int = 0  # LFS downloads still to be cut halfway


@dataclass
class FakeHub:
    files_dir: Path
    repos: set[str] = field(default_factory=set)
    faults: Faults = field(default_factory=Faults)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range)

    def __post_init__(self) -> None:
        self.files: dict[str, bytes] = {
            p.name: p.read_bytes() for p in sorted(self.files_dir.iterdir()) if p.is_file()}
        self.files["README.md"] = b"---\nlicense: mit\n---\nA test repository.\n"  # not part of a model
        self.files[".gitattributes"] = b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
        self.sha256 = {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()}
        self.by_sha256 = {self.sha256[name]: name for name in LFS_FILES}
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.url = self.cdn_url = ""

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> "FakeHub":
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True, name="fake-hub").start()
        if not ready.wait(30):
            raise RuntimeError("the fake hub did not start")
        return self

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/api/models/{org}/{name}", self._model_info)
        app.router.add_get("/api/models/{org}/{name}/revision/{rev}", self._model_info)
        app.router.add_route("*", "/{org}/{name}/resolve/{rev}/{file}", self._resolve)
        app.router.add_get("/lfs/{sha256}", self._lfs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        urls = []
        for _ in ("hub", "cdn"):  # two origins: huggingface_hub stops at a redirect to another one
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            await web.SockSite(self._runner, sock).start()
            urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
        self.url, self.cdn_url = urls

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    # --- routes ----------------------------------------------------------------------------

    def _log(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path, request.headers.get("Range", "")))

    def _repo(self, request: web.Request) -> str:
        repo = f"{request.match_info['org']}/{request.match_info['name']}"
        if repo not in self.repos:
            raise web.HTTPUnauthorized(headers={"X-Error-Code": "RepoNotFound",
                                                "X-Error-Message": "Repository not found"})
        rev = request.match_info.get("rev", "main")
        if rev not in ("main", COMMIT):
            raise web.HTTPNotFound(headers={"X-Error-Code": "RevisionNotFound",
                                            "X-Error-Message": "Invalid rev id"})
        return repo

    async def _model_info(self, request: web.Request) -> web.Response:
        self._log(request)
        repo = self._repo(request)
        detailed = request.query.get("blobs", "").lower() == "true"
        siblings = []
        for name, data in self.files.items():
            entry: dict = {"rfilename": name}
            if detailed:
                entry.update(size=len(data), blobId=git_blob_id(data))
                if name in LFS_FILES:
                    entry["lfs"] = {"size": len(data), "sha256": self.sha256[name], "pointerSize": 134}
            siblings.append(entry)
        return web.json_response({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                                  "library_name": "ctranslate2", "tags": ["audio", "automatic-speech-recognition"],
                                  "siblings": siblings})

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        self._repo(request)
        name = request.match_info["file"]
        if name not in self.files:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        data = self.files[name]
        if name in LFS_FILES:
            sha = self.sha256[name]
            raise web.HTTPFound(f"{self.cdn_url}/lfs/{sha}", headers={
                "X-Repo-Commit": COMMIT, "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                "ETag": f'"{git_blob_id(data)}"'})
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{git_blob_id(data)}"', "Content-Length": str(len(data)),
                   "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        return web.Response(body=data, headers={k: v for k, v in headers.items() if k != "Content-Length"})

    async def _lfs(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        name = self.by_sha256.get(request.match_info["sha256"])
        if name is None:
            raise web.HTTPNotFound()
        data = self.files[name]
        if self.faults.corrupt:
            data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        start = 0
        if request.http_range.start is not None:
            start = request.http_range.start
        response = web.StreamResponse(status=206 if start else 200)
        response.content_length = len(data) - start
        response.headers["Accept-Ranges"] = "bytes"
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await response.prepare(request)
        body = memoryview(data)[start:]
        if self.faults.drops > 0:
            self.faults.drops -= 1
            await response.write(bytes(body[: len(body) // 2]))
            assert request.transport is not None
            request.transport.close()  # mid-body: the client sees a truncated response
            return response
        for offset in range(0, len(body), 1 << 20):
            await response.write(bytes(body[offset:offset + (1 << 20)]))
        await response.write_eof()
        return response
