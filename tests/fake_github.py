"""A stand-in for GitHub's REST API on 127.0.0.1, answering the shapes PyGithub reads:
list open pull requests (filtered by head and base), create one, edit one (close it), and
comment on one."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeGitHub:
    def __init__(self) -> None:
        self.pulls: list[dict] = []
        self.comments: dict[int, list[str]] = {}  # pull number -> comment bodies
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, authorization
        self.fail_next = 0  # answer this many requests with 502 first (a transient outage)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def settings(self, token_env: str = "CTO_TEST_TOKEN") -> dict:
        """A project's `git` and `github` settings pointing at this stand-in."""
        return {
            "git": {"token_env": token_env},
            "github": {"repository": "acme/shop", "api_url": self.url},
        }

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _outage(self) -> bool:
                if fake.fail_next > 0:
                    fake.fail_next -= 1
                    self._send(502, {"message": "Bad Gateway"})
                    return True
                return False

            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                fake.requests.append(("GET", parsed.path, self.headers.get("Authorization")))
                if self._outage():
                    return
                parts = parsed.path.strip("/").split("/")
                if len(parts) == 4 and parts[0] == "repos" and parts[3] == "pulls":
                    query = parse_qs(parsed.query)
                    head = query.get("head", [""])[0].split(":", 1)[-1]
                    base = query.get("base", [None])[0]
                    found = [
                        p
                        for p in fake.pulls
                        if p["state"] == "open"
                        and (not head or p["head"]["ref"] == head)
                        and (base is None or p["base"]["ref"] == base)
                    ]
                    return self._send(200, found)
                if len(parts) == 5 and parts[0] == "repos" and parts[3] == "pulls":
                    pull = next((p for p in fake.pulls if p["number"] == int(parts[4])), None)
                    if pull is not None:
                        return self._send(200, pull)
                return self._send(404, {"message": "Not Found"})

            def do_POST(self) -> None:
                parsed = urlparse(self.path)
                fake.requests.append(("POST", parsed.path, self.headers.get("Authorization")))
                if self._outage():
                    return
                parts = parsed.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                if len(parts) == 6 and parts[3] == "issues" and parts[5] == "comments":
                    number = int(parts[4])
                    fake.comments.setdefault(number, []).append(payload["body"])
                    return self._send(201, {"id": len(fake.comments), "body": payload["body"]})
                if len(parts) == 4 and parts[0] == "repos" and parts[3] == "pulls":
                    owner, repo = parts[1], parts[2]
                    if any(
                        p["head"]["ref"] == payload["head"] and p["state"] == "open"
                        for p in fake.pulls
                    ):
                        return self._send(422, {"message": "A pull request already exists"})
                    number = len(fake.pulls) + 1
                    pull = {
                        "number": number,
                        "state": "open",
                        "title": payload["title"],
                        "body": payload.get("body"),
                        "url": f"{fake.url}/repos/{owner}/{repo}/pulls/{number}",
                        "issue_url": f"{fake.url}/repos/{owner}/{repo}/issues/{number}",
                        "html_url": f"https://github.example/{owner}/{repo}/pull/{number}",
                        "head": {"ref": payload["head"], "label": f"{owner}:{payload['head']}"},
                        "base": {"ref": payload["base"], "label": f"{owner}:{payload['base']}"},
                    }
                    fake.pulls.append(pull)
                    return self._send(201, pull)
                return self._send(404, {"message": "Not Found"})

            def do_PATCH(self) -> None:
                parsed = urlparse(self.path)
                fake.requests.append(("PATCH", parsed.path, self.headers.get("Authorization")))
                parts = parsed.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                if len(parts) == 5 and parts[3] == "pulls":
                    pull = next((p for p in fake.pulls if p["number"] == int(parts[4])), None)
                    if pull is None:
                        return self._send(404, {"message": "Not Found"})
                    pull.update({k: v for k, v in payload.items() if k in ("state", "title")})
                    return self._send(200, pull)
                return self._send(404, {"message": "Not Found"})

        return Handler
