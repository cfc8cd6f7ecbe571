"""A Hugging Face hub on 127.0.0.1, serving local folders as model repos: the routes
`huggingface_hub` downloads through (`HF_ENDPOINT`): repo info by revision, the recursive tree,
and HEAD/GET of a file with Range. `fail_once` drops the connection half-way through a file's
first GET, to test resumed downloads."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self, repos: dict[str, tuple[Path, str]], fail_once: set[str] = frozenset()) -> None:
        """`repos`: repo id -> (folder, commit sha); the branch `main` points at that commit."""
        self.repos = repos
        self.fail_once = set(fail_once)
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._serve(self, head=True)

            def do_GET(self):
                hub._serve(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _repo(self, repo_id: str, revision: str):
        folder, sha = self.repos.get(repo_id, (None, None))
        if folder is None:
            return None, None, "RepoNotFound"
        if revision not in ("main", sha):
            return None, None, "RevisionNotFound"
        return folder, sha, None

    def _serve(self, handler, head: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and "revision" in parts:
            i = parts.index("revision")
            return self._repo_info("/".join(parts[2:i]), parts[i + 1], handler)
        if parts[:2] == ["api", "models"] and "tree" in parts:
            i = parts.index("tree")
            return self._tree("/".join(parts[2:i]), parts[i + 1], handler)
        if "resolve" in parts:
            i = parts.index("resolve")
            return self._file("/".join(parts[:i]), parts[i + 1], "/".join(parts[i + 2:]), handler, head)
        self._json(handler, 404, {"error": "not found"})

    def _files(self, folder: Path):
        return sorted(p for p in folder.rglob("*") if p.is_file())

    def _repo_info(self, repo_id, revision, handler):
        folder, sha, error = self._repo(repo_id, revision)
        if error:
            return self._json(handler, 404, {"error": error}, {"X-Error-Code": error})
        siblings = [{"rfilename": str(p.relative_to(folder)), "size": p.stat().st_size} for p in self._files(folder)]
        self._json(handler, 200, {"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": siblings,
                                  "private": False, "gated": False, "disabled": False, "tags": []})

    def _tree(self, repo_id, revision, handler):
        folder, sha, error = self._repo(repo_id, revision)
        if error:
            return self._json(handler, 404, {"error": error}, {"X-Error-Code": error})
        entries = [{"type": "file", "path": str(p.relative_to(folder)), "size": p.stat().st_size,
                    "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for p in self._files(folder)]
        self._json(handler, 200, entries)

    def _file(self, repo_id, revision, name, handler, head):
        folder, sha, error = self._repo(repo_id, revision)
        target = folder / name if folder else None
        if error or target is None or not target.is_file():
            code = error or "EntryNotFound"
            return self._json(handler, 404, {"error": code}, {"X-Error-Code": code})
        data = target.read_bytes()
        etag = hashlib.sha256(data).hexdigest()
        start = 0
        ranged = handler.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            start = int(ranged[6:].split("-")[0] or 0)
        body = data[start:]
        handler.send_response(206 if start else 200)
        handler.send_header("X-Repo-Commit", sha)
        handler.send_header("ETag", f'"{etag}"')
        handler.send_header("Content-Length", str(len(body)))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if head:
            return
        key = f"{repo_id}/{name}"
        if key in self.fail_once and len(body) > 1:
            self.fail_once.discard(key)
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.wfile.write(body)

    @staticmethod
    def _json(handler, status, payload, headers=None):
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)
