"""The subset of the Hugging Face Hub's HTTP API that ``huggingface_hub`` uses to create repos, commit (adds and
deletes, pull requests), list trees and download, served on 127.0.0.1 from memory with the standard library, so
pushes and loads are tested through the real client code path, offline. Files go as regular (base64) blobs:
the preupload answer never asks for LFS or Xet."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    messages: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        return self.branches.get(revision) or (revision if revision in self.commits else None)


class FakeHub:
    """``repos[(type, repo_id)]``; ``fail_commits`` > 0 makes that many commit requests fail (a network failure
    mid-push); ``requests`` logs ``(method, path)``."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.fail_commits = 0
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[(repo_type, repo_id)]
        return repo.commits[repo.resolve(revision)]

    def commit(self, repo: Repo, branch: str, files: dict[str, bytes], message: str) -> str:
        sha = hashlib.sha1(
            json.dumps([branch, message, sorted(files), len(repo.commits)]).encode()
        ).hexdigest()
        repo.commits[sha], repo.messages[sha], repo.branches[branch] = files, message, sha
        return sha


def _entry(path: str, data: bytes) -> dict:
    return {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}


def _handler(hub: FakeHub):
    kinds = {"models": "model", "datasets": "dataset", "spaces": "space"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None) -> None:
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _repo(self, kind: str, repo_id: str) -> Repo | None:
            repo = hub.repos.get((kinds.get(kind, kind), repo_id))
            if repo is None:
                self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return repo

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            hub.requests.append((self.command, path))
            if path == "/api/whoami-v2":
                return self._send(200, {"name": "tester", "type": "user", "orgs": []})
            m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/revision/(.+))?", path)
            if m:
                repo = self._repo(m[1], m[2])
                if repo is None:
                    return None
                sha = repo.resolve(m[3] or "main")
                if sha is None:
                    return self._send(
                        404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}
                    )
                files = repo.commits[sha]
                siblings = [{"rfilename": p, "size": len(d)} for p, d in sorted(files.items())]
                return self._send(
                    200, {"id": m[2], "sha": sha, "private": repo.private, "siblings": siblings}
                )
            m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
            if m:
                repo = self._repo(m[1], m[2])
                if repo is None:
                    return None
                sha = repo.resolve(m[3])
                prefix = (m[4] or "").strip("/")
                files = repo.commits.get(sha, {})
                return self._send(
                    200, [_entry(p, d) for p, d in sorted(files.items()) if p.startswith(prefix)]
                )
            m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if m:
                repo = self._repo({"datasets/": "dataset", "spaces/": "space"}.get(m[1] or "", "model"), m[2])
                if repo is None:
                    return None
                sha = repo.resolve(m[3])
                data = repo.commits.get(sha, {}).get(m[4]) if sha else None
                if data is None:
                    return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                etag = hashlib.sha1(data).hexdigest()
                headers = {
                    "Content-Type": "application/octet-stream",
                    "X-Repo-Commit": sha,
                    "ETag": f'"{etag}"',
                }
                return self._send(200, data, headers)
            return self._send(404, {"error": f"not served by the test hub: GET {path}"})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            hub.requests.append(("POST", path))
            body = self._body()
            if path == "/api/repos/create":
                spec = json.loads(body)
                kind = spec.get("type") or "model"
                repo_id = f"{spec.get('organization') or 'tester'}/{spec['name']}"
                if (kind, repo_id) in hub.repos:
                    return self._send(409, {"error": "You already created this repo", "url": repo_id})
                private = spec.get("private") or spec.get("visibility") in ("private", "protected")
                repo = hub.repos[(kind, repo_id)] = Repo(private=bool(private))
                hub.commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs\n"}, "initial commit")
                prefix = "" if kind == "model" else f"{kind}s/"
                return self._send(200, {"url": f"{hub.endpoint}/{prefix}{repo_id}", "name": repo_id})
            if path == "/api/validate-yaml":
                return self._send(200, {"errors": [], "warnings": []})
            m = re.fullmatch(
                r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/(preupload|commit|paths-info)/(.+)", path
            )
            if not m:
                return self._send(404, {"error": f"not served by the test hub: POST {path}"})
            repo = self._repo(m[1], m[2])
            if repo is None:
                return None
            action, revision = m[3], m[4]
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                   "shouldIgnore": False, "oid": None} for f in files]})  # fmt: skip
            if action == "paths-info":
                wanted = (
                    parse_qs(body.decode()).get("paths", [])
                    if body[:1] != b"{"
                    else json.loads(body)["paths"]
                )
                files = repo.commits.get(repo.resolve(revision), {})
                return self._send(200, [_entry(p, files[p]) for p in wanted if p in files])
            if hub.fail_commits > 0:  # a network failure mid-push: the connection drops, nothing is committed
                hub.fail_commits -= 1
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)
                return None
            base = repo.resolve(revision)
            files, message = dict(repo.commits.get(base, {})), ""
            for line in body.decode().splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "header":
                    message = value["summary"]
                elif item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "deletedFile":
                    files.pop(value["path"], None)
                elif item["key"] == "deletedFolder":
                    files = {
                        p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")
                    }
            if query.get("create_pr", ["0"])[0] in ("1", "true", "True"):
                number = sum(b.startswith("refs/pr/") for b in repo.branches) + 1
                sha = hub.commit(repo, f"refs/pr/{number}", files, message)
                prefix = "" if m[1] == "models" else f"{m[1]}/"
                return self._send(200, {"commitUrl": f"{hub.endpoint}/{prefix}{m[2]}/commit/{sha}", "commitOid": sha,
                                        "pullRequestUrl": f"{hub.endpoint}/{prefix}{m[2]}/discussions/{number}"})  # fmt: skip
            sha = hub.commit(repo, revision, files, message)
            prefix = "" if m[1] == "models" else f"{m[1]}/"
            return self._send(
                200, {"commitUrl": f"{hub.endpoint}/{prefix}{m[2]}/commit/{sha}", "commitOid": sha}
            )

    return Handler
