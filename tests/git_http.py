"""A real authenticated git remote over HTTP for the tests: `git http-backend` (git's own smart
HTTP server, as a CGI) behind a small threaded HTTP server that demands Basic authentication with
one token, and records every request (path and Authorization header) it receives.

`RecordingServer` is the other end an attacker would set up: it answers 401 to everything and
records what it was sent."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().strip(), 16)
            if size == 0:
                handler.rfile.readline()
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


class _Recorder:
    def __init__(self):
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.lock = threading.Lock()

    def record(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests.append(
                (handler.command, handler.path, handler.headers.get("Authorization"))
            )


class _Server:
    handler_class: type[BaseHTTPRequestHandler]

    def __enter__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _GitHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _serve(self):
        owner: GitHttpServer = self.server.owner  # type: ignore[attr-defined]
        owner.recorder.record(self)
        expected = "Basic " + base64.b64encode(f"x-access-token:{owner.token}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = _read_body(self)
        parts = urlsplit(self.path)
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(owner.root),
        }
        if self.headers.get("Content-Encoding") == "gzip":
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


class GitHttpServer(_Server):
    """Serves the bare repositories under `root` at http://127.0.0.1:<port>/<name>."""

    handler_class = _GitHandler

    def __init__(self, root: Path, token: str):
        self.root = root
        self.token = token
        self.recorder = _Recorder()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def publish(self, bare: Path, name: str) -> str:
        """Copy a bare repository under the served root; its URL."""
        shutil.copytree(bare, self.root / name)
        return self.url(name)


class _RecordingHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _serve(self):
        self.server.owner.recorder.record(self)  # type: ignore[attr-defined]
        _read_body(self)
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="evil"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = _serve
    do_POST = _serve


class RecordingServer(_Server):
    """What an attacker would point a push at: records requests, grants nothing."""

    handler_class = _RecordingHandler

    def __init__(self):
        self.recorder = _Recorder()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stolen.git"
