"""A local server speaking the part of the Hugging Face hub's HTTP protocol that
`huggingface_hub` uses to download: model info (`/api/models/<repo>[/revision/<rev>]`, with
`?blobs=true` for sizes and LFS checksums), file resolution (`HEAD`/`GET
/<repo>/resolve/<rev>/<file>` with the commit, ETag and size headers, ranged GETs), model
search (`/api/models?search=`), and the hub's error codes (`X-Error-Code`: RepoNotFound,
EntryNotFound, GatedRepo; 401 for a private repo without a token).

Faults for tests: `cut_after` drops the connection after that many bytes of the next GET of a
file (once); `corrupt` serves other bytes than the checksum promises."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    files: dict[str, bytes]
    private_token: str = ""  # the token it needs; "" = public
    gated: bool = False
    corrupt: set[str] = field(default_factory=set)


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.cut_after: dict[str, int] = {}  # file → bytes to send before dropping, once
        self.requests: list[tuple[str, str, str]] = []  # (method, path, range header)
        self.static: dict[str, bytes] = {}  # plain files, outside any repo (put)
        self.ignore_ranges = False  # a server that always answers with the whole file
        handler = _handler(self)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def put(self, path: str, data: bytes) -> str:
        """A plain file at /static/PATH, as any web server holds one; its URL."""
        self.static[path] = data
        return f"{self.url}/static/{path}"

    def add(self, repo: str, files: dict[str, bytes], **kwargs: object) -> Repo:
        self.repos[repo] = Repo(files, **kwargs)  # type: ignore[arg-type]
        return self.repos[repo]


def _handler(hub: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return None

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            hub.requests.append((self.command, path, self.headers.get("Range", "")))
            if path == "/api/models":
                self._search(parse_qs(parts.query).get("search", [""])[0])
                return
            info = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?$", path)
            if info:
                self._info(info.group(1))
                return
            if path.startswith("/static/"):
                self._static(path.removeprefix("/static/"), body)
                return
            resolve = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if resolve:
                self._file(resolve.group(1), resolve.group(3), body)
                return
            self._error(404, "RepoNotFound")

        def _repo(self, name: str) -> Repo | None:
            repo = hub.repos.get(name)
            if repo is None:
                self._error(401, "RepoNotFound")  # the hub answers 401 for unknown repos
                return None
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if repo.private_token and token != repo.private_token:
                self._error(401, "RepoNotFound")
                return None
            if repo.gated and not token:
                self._error(403, "GatedRepo")
                return None
            return repo

        def _info(self, name: str) -> None:
            repo = self._repo(name)
            if repo is None:
                return
            siblings = []
            for path, data in sorted(repo.files.items()):
                sha = hashlib.sha256(data).hexdigest()
                siblings.append(
                    {
                        "rfilename": path,
                        "size": len(data),
                        "blobId": sha[:40],
                        "lfs": {"sha256": sha, "size": len(data), "pointerSize": 134},
                    }
                )
            self._json({"id": name, "modelId": name, "sha": COMMIT, "siblings": siblings})

        def _search(self, text: str) -> None:
            found = [
                {"id": name, "modelId": name, "tags": ["gguf"], "downloads": 1}
                for name in sorted(hub.repos)
                if text.lower() in name.lower()
            ]
            self._json(found)

        def _file(self, name: str, path: str, body: bool) -> None:
            repo = self._repo(name)
            if repo is None:
                return
            data = repo.files.get(path)
            if data is None:
                self._error(404, "EntryNotFound")
                return
            sha = hashlib.sha256(data).hexdigest()
            if path in repo.corrupt:
                data = bytes(b ^ 0xFF for b in data)
            hub_headers = {
                "X-Repo-Commit": COMMIT,
                "ETag": f'"{sha}"',
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
            }
            self._bytes(path, data, body, hub_headers)

        def _static(self, path: str, body: bool) -> None:
            data = hub.static.get(path)
            if data is None:
                self._error(404, "NotFound")
                return
            self._bytes(path, data, body, {})

        def _bytes(self, path: str, data: bytes, body: bool, headers: dict[str, str]) -> None:
            """The file from the asked-for offset (a ranged GET), cut short once where
            `cut_after` says."""
            start = 0
            ranged = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if ranged and self.command == "GET" and not hub.ignore_ranges:
                start = int(ranged.group(1))
            self.send_response(206 if start else 200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            cut = hub.cut_after.pop(path, None)
            if cut is not None:
                self.wfile.write(data[start : start + cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data[start:])

        def _json(self, value: object) -> None:
            raw = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, status: int, code: str) -> None:
            raw = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler
