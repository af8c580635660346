"""A stand-in of the Kubernetes API server, at the HTTP level, for the Job manifests
dagster-k8s's real step handler creates: it accepts `create Job` requests (recording each
manifest exactly as sent) and answers later questions about those Jobs as if their pods had
failed, so a run started against it ends at once. No cluster runs here; this is the one remote
service the tests imitate, and only its wire format.

Also: `run_launcher_config(values)` renders the chart's run launcher section of the
instance's `dagster.yaml` from Helm values, the way the official chart's template does.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, data: dict) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        api: KubernetesApi = self.server.api  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with api.lock:
            api.requests.append(("POST", self.path))
            if self.path.endswith("/jobs"):
                api.jobs.append(body)
                if api.refuse_jobs:  # recorded; the step fails at once instead of waiting
                    status = {"kind": "Status", "status": "Failure", "code": 422}
                    self._send(422, {**status, "message": "recorded by the test's stand-in"})
                    return
        body.setdefault("metadata", {})["uid"] = str(uuid.uuid4())
        self._send(201, body)

    def do_GET(self):
        api: KubernetesApi = self.server.api  # type: ignore[attr-defined]
        with api.lock:
            api.requests.append(("GET", self.path))
        path = self.path.split("?", 1)[0]
        if path.endswith("/pods"):
            self._send(200, {"apiVersion": "v1", "kind": "PodList", "items": []})
        elif "/jobs/" in path:
            name = path.split("/jobs/", 1)[1].split("/", 1)[0]
            status = {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}
            self._send(
                200,
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": name},
                    "status": status,
                },
            )
        else:
            self._send(404, {"kind": "Status", "status": "Failure", "code": 404})

    def do_DELETE(self):
        api: KubernetesApi = self.server.api  # type: ignore[attr-defined]
        with api.lock:
            api.requests.append(("DELETE", self.path))
        self._send(200, {"kind": "Status", "status": "Success"})


class KubernetesApi:
    """`refuse_jobs`: answer a Job's creation with 422 after recording it, so a run that only
    needs its manifests ends without waiting for health checks (20 s each)."""

    def __init__(self, refuse_jobs: bool = False):
        self.refuse_jobs = refuse_jobs
        self.jobs: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __enter__(self) -> KubernetesApi:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.api = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": self.url}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [
                        {
                            "name": "x",
                            "context": {"cluster": "c", "user": "u", "namespace": "cto-dagster"},
                        }
                    ],
                    "current-context": "x",
                }
            )
        )
        return path


def run_launcher_config(
    values: dict, kubeconfig: Path, release: str = "cto-dagster", namespace: str = "cto-dagster"
) -> dict:
    """The `run_launcher` entry of the instance's dagster.yaml, as the chart renders it from
    `runLauncher.config.customRunLauncher` (verbatim), here pointed at a kubeconfig instead of
    the cluster's in-cluster credentials."""
    launcher = values["runLauncher"]["config"]["customRunLauncher"]
    config = dict(launcher["config"])
    config.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    assert config["job_namespace"] == namespace
    assert config["instance_config_map"] == f"{release}-instance"
    return {"module": launcher["module"], "class": launcher["class"], "config": config}
