"""A loopback HTTP server (127.0.0.1 only) for the data-preparation tests.

It serves static release files by path (with HTTP Range), and stands in for the Hugging Face
Hub's dataset endpoints that ``huggingface_hub`` uses to list and download files
(``/api/datasets/<repo>[/revision/<rev>]``, ``/api/datasets/<repo>/tree/<rev>``,
``/datasets/<repo>/resolve/<rev>/<file>``). ``cut_once`` paths send half the body and close the
connection the first time they are requested (an interrupted download).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class Loopback:
    def __init__(self):
        self.files: dict[str, bytes] = {}  # "/path" -> body
        # repo -> {"sha": commit, "files": {path: bytes}, "lfs_sha256": {path: what the listing claims}}
        self.hub: dict[str, dict] = {}
        self.cut_once: set[str] = set()
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _json(self, obj, head):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _missing(self):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()

            def _serve(self, head: bool):
                path = unquote(urlparse(self.path).path)
                srv.log.append((self.command, path, self.headers.get("Range")))
                m = re.match(r"^/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?/?$", path)
                if m and m.group(1) in srv.hub:
                    repo = srv.hub[m.group(1)]
                    return self._json(
                        {
                            "id": m.group(1),
                            "sha": repo["sha"],
                            "private": False,
                            "siblings": [{"rfilename": f} for f in sorted(repo["files"])],
                        },
                        head,
                    )
                m = re.match(r"^/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(/.*)?$", path)
                if m and m.group(1) in srv.hub:
                    repo = srv.hub[m.group(1)]
                    lfs = repo.get("lfs_sha256", {})
                    return self._json(
                        [
                            {
                                "type": "file",
                                "path": f,
                                "size": len(b),
                                "oid": hashlib.sha1(b).hexdigest(),
                                "lfs": {
                                    "oid": lfs.get(f, hashlib.sha256(b).hexdigest()),
                                    "size": len(b),
                                    "pointerSize": 134,
                                },
                            }
                            for f, b in sorted(repo["files"].items())
                        ],
                        head,
                    )
                m = re.match(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if m:
                    repo = srv.hub.get(m.group(1))
                    if repo is None or m.group(3) not in repo["files"] or m.group(2) not in (repo["sha"], "main"):
                        return self._missing()
                    body = repo["files"][m.group(3)]
                    extra = {"X-Repo-Commit": repo["sha"], "ETag": f'"{hashlib.sha256(body).hexdigest()}"'}
                    return self._body(path, body, head, extra)
                if path not in srv.files:
                    return self._missing()
                return self._body(path, srv.files[path], head, {})

            def _body(self, path, body, head, extra):
                rng = self.headers.get("Range")
                start = 0
                if rng:
                    start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.send_header("Accept-Ranges", "bytes")
                for k, v in extra.items():
                    self.send_header(k, v)
                if path in srv.cut_once and not head:
                    srv.cut_once.discard(path)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                if not head:
                    self.wfile.write(part)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def serve_url(self, url: str, body: bytes) -> None:
        """Serve ``body`` where the mirror ``https://`` -> ``<self.url>/`` maps ``url``."""
        self.files["/" + url.split("://", 1)[1]] = body
