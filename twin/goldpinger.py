"""The goldpinger model: every goldpinger pod pinging every other, answered in goldpinger's own schema.

Rules (as bloomberg/goldpinger v3):
- An instance is a Running pod labelled ``app.kubernetes.io/name=goldpinger``. Its peers are the pods
  of its namespace matching its ``LABEL_SELECTOR`` env (default that same label), in any phase, itself
  included.
- Every ``goldpinger_refresh_s`` (and before answering when the last round is older) each instance
  pings all its peers: ``OK`` by ``twin.connectivity.can_reach``; every result carries the round's
  ``PingTime`` (RFC 3339, milliseconds), ``PodIP``, ``HostIP``, ``response-time-ms``; failures carry
  ``error`` and status-code 504 (500 when the peer has no IP yet), successes status-code 200.
- ``/check`` is one instance's view ``{"podResults": {peer: result}}``. ``/check_all`` is what the
  instance behind the Service gathers by calling ``/check`` on every peer:
  ``{"hosts": [{"podName", "hostIP", "podIP"}], "responses": {peer: {"OK", "PodIP", "HostIP",
  "response": {"podResults": ...}} or {"OK": false, ..., "error"}}}``. There is no top-level ``OK``
  (current goldpinger leaves it out), so a mesh gate must look at every nested result.
- Reached through the API server's service proxy (``services/goldpinger[:8080]/proxy/<path>``, 404
  when the Service does not exist, 503 when no instance is Ready) or on a direct HTTP port.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from twin.config import Timing
from twin.connectivity import can_reach
from twin.controllers.base import Controller, fnv32a, labels_of, pod_ready, pod_running
from twin.faults import Faults
from twin.resources import PODS, SERVICES
from twin.selectors import SelectorError, labels_match, parse_label_selector, selector_from_dict
from twin.store import Obj, Store, now_iso

APP_LABEL = "app.kubernetes.io/name"
DEFAULT_SELECTOR = f"{APP_LABEL}=goldpinger"
SERVICE_NAME = "goldpinger"
SERVICE_PORTS = ("", "8080", "http")
PING_TIMEOUT_MS = 300

Response = tuple[int, str, bytes]


def ping_time() -> str:
    """Goldpinger's PingTime: RFC 3339 UTC with milliseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def is_instance(pod: Obj) -> bool:
    return labels_of(pod).get(APP_LABEL) == "goldpinger" and pod_running(pod)


def _env(pod: Obj, name: str) -> str | None:
    for c in pod.get("spec", {}).get("containers") or []:
        for env in c.get("env") or []:
            if env.get("name") == name and "value" in env:
                return str(env["value"])
    return None


def _with_ips(entry: dict[str, Any], pod: Obj, pod_key: str = "PodIP", host_key: str = "HostIP") -> dict[str, Any]:
    status = pod.get("status") or {}
    if status.get("podIP"):
        entry[pod_key] = status["podIP"]
    if status.get("hostIP"):
        entry[host_key] = status["hostIP"]
    return entry


def _json(status: int, body: Any) -> Response:
    return status, "application/json", json.dumps(body).encode()


def _k8s_status(code: int, reason: str, message: str) -> Response:
    return _json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": message, "reason": reason, "code": code})


class GoldpingerModel(Controller):
    """Runs the ping rounds and serves ``/check``, ``/check_all`` and ``/healthz``."""

    name = "goldpinger"
    watches = (PODS,)

    def __init__(self, store: Store, timing: Timing, faults: Faults) -> None:
        super().__init__(store, timing, faults)
        self._lock = threading.Lock()
        self._results: dict[str, dict[str, Any]] = {}  # instance uid -> {peer name: PodResult}
        self._last_round: float | None = None
        self._servers: list[ThreadingHTTPServer] = []
        self.rounds = 0

    # ---- ping rounds ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        self.refresh()

    def refresh(self, *, force: bool = False) -> None:
        """Run a ping round when the last one is ``goldpinger_refresh_s`` old (or ``force``)."""
        with self._lock:
            now = time.monotonic()
            if not force and self._last_round is not None:
                wait = self._last_round + self.timing.goldpinger_refresh_s - now
                if wait > 0:
                    self.wake_in(wait)
                    return
            self._ping_round()
            self._last_round = now
            self.rounds += 1
            self.wake_in(self.timing.goldpinger_refresh_s)

    def peers(self, instance: Obj) -> list[Obj]:
        """The pods an instance pings: its namespace's pods matching its LABEL_SELECTOR."""
        try:
            selector = parse_label_selector(_env(instance, "LABEL_SELECTOR") or DEFAULT_SELECTOR)
        except SelectorError:
            selector = parse_label_selector(DEFAULT_SELECTOR)
        pods, _ = self.store.list(PODS, instance["metadata"]["namespace"])
        return [p for p in pods if labels_match(selector, labels_of(p))
                and not p["metadata"].get("deletionTimestamp")]

    def _ping_round(self) -> None:
        stamp = ping_time()
        results: dict[str, dict[str, Any]] = {}
        for instance in self.store.iter_all(PODS):
            if is_instance(instance):
                results[instance["metadata"]["uid"]] = {
                    peer["metadata"]["name"]: self._ping(instance, peer, stamp) for peer in self.peers(instance)}
        self._results = results

    def _ping(self, src: Obj, dst: Obj, stamp: str) -> dict[str, Any]:
        ok, error = can_reach(src, dst, self.faults)
        result = _with_ips({"OK": ok, "PingTime": stamp}, dst)
        if ok:
            same_node = src["spec"].get("nodeName") == dst["spec"].get("nodeName")
            jitter = fnv32a(f"{src['metadata']['name']}>{dst['metadata']['name']}".encode()) % 3
            result["response"] = {"boot_time": (dst.get("status") or {}).get("startTime")}
            result["response-time-ms"] = (1 if same_node else 2) + jitter
            result["status-code"] = 200
        elif not (dst.get("status") or {}).get("podIP"):
            result["error"] = error
            result["status-code"] = 500
        else:
            result["error"] = error
            result["response-time-ms"] = PING_TIMEOUT_MS if "deadline" in error else 1
            result["status-code"] = 504
        return result

    # ---- answers -------------------------------------------------------------------------------

    def serving_instance(self, namespace: str) -> Obj | None:
        """The Ready instance the Service sends a request to (the first by name)."""
        service = self.store.get(SERVICES, namespace, SERVICE_NAME)
        selector = selector_from_dict((service or {}).get("spec", {}).get("selector") or {})
        pods, _ = self.store.list(PODS, namespace)
        ready = [p for p in pods if is_instance(p) and pod_ready(p) and labels_match(selector, labels_of(p))]
        return ready[0] if ready else None

    def check(self, namespace: str = "default", pod: str | None = None) -> dict[str, Any] | None:
        """``/check`` from the serving instance (or the instance named ``pod``, as a port-forward would
        reach it); None when there is no such Running instance."""
        self.refresh()
        if pod is None:
            server = self.serving_instance(namespace)
        else:
            found = self.store.get(PODS, namespace, pod)
            server = found if found is not None and is_instance(found) else None
        if server is None:
            return None
        with self._lock:
            return {"podResults": dict(self._results.get(server["metadata"]["uid"], {}))}

    def check_all(self, namespace: str = "default") -> dict[str, Any] | None:
        """``/check_all`` from the serving instance; None when no instance is Ready."""
        self.refresh()
        server = self.serving_instance(namespace)
        if server is None:
            return None
        hosts: list[dict[str, Any]] = []
        responses: dict[str, Any] = {}
        with self._lock:
            results = dict(self._results)
        for peer in self.peers(server):
            name = peer["metadata"]["name"]
            hosts.append(_with_ips({"podName": name}, peer, "podIP", "hostIP"))
            ok, error = can_reach(server, peer, self.faults, path="/check")
            entry: dict[str, Any] = _with_ips({"OK": ok}, peer)
            if ok:
                entry["response"] = {"podResults": dict(results.get(peer["metadata"]["uid"], {}))}
            else:
                entry["error"] = error
            responses[name] = entry
        return {"hosts": hosts, "responses": responses}

    def answer(self, namespace: str, path: str) -> Response:
        """The HTTP answer of the goldpinger behind the Service for a path (no leading slash needed)."""
        path = path.strip("/")
        if path == "healthz":
            return _json(200, {"OK": True, "duration-ns": 1000, "generated-at": now_iso()})
        if path not in ("check", "check_all"):
            return _json(404, {"code": 404, "message": f"path /{path} was not found"})
        body = self.check_all(namespace) if path == "check_all" else self.check(namespace)
        if body is None:
            return _k8s_status(503, "ServiceUnavailable", f'no endpoints available for service "{SERVICE_NAME}"')
        return _json(200, body)

    def proxy_handler(self, ns: str, service: str, port: str, path: str,
                      query: dict[str, list[str]]) -> Response | None:
        """For ``ApiServer.add_service_proxy``: answers for Service ``goldpinger`` (port 8080 or unset)."""
        if service != SERVICE_NAME or port not in SERVICE_PORTS:
            return None
        if self.store.get(SERVICES, ns, service) is None:
            return _k8s_status(404, "NotFound", f'services "{service}" not found')
        return self.answer(ns, path)

    # ---- direct port ---------------------------------------------------------------------------

    def serve_direct(self, host: str = "127.0.0.1", port: int = 0, *,
                     namespace: str = "default") -> tuple[ThreadingHTTPServer, int]:
        """Serve goldpinger's API on its own port (a LoadBalancer in front of the Service)."""
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, content_type, body = model.answer(namespace, urlsplit(self.path).path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="twin-goldpinger-http", daemon=True).start()
        self._servers.append(server)
        return server, server.server_address[1]

    def stop(self) -> None:
        super().stop()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
