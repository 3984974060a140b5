"""The twin's Kubernetes API server: the HTTP contract the official client and kubectl use.

Threaded HTTP/1.1 with keep-alive; watches stream chunked. Order of a request: open paths
(``/version``, ``/healthz``, ``/readyz``, ``/livez``), bearer-token check (401), routes added with
``add_route`` (the twin's admin API, exempt from faults), injected API faults, discovery, then
resources (see ``twin.api.rest``), evictions (``twin.api.eviction``) and the service proxy. Errors are
Kubernetes ``Status`` bodies. Every request is recorded in ``request_log``.

Besides the admin token, ``add_user`` registers bearer tokens of restricted users: their requests are
checked by an authorizer (``twin.rbac``) before faults and serving, and denied with 403 and the API
server's own message; the admin routes are not theirs. Their writes of roles and role bindings must also
grant nothing they do not hold, or they need ``escalate`` / ``bind`` (``twin.api.escalation``).

Go clients (kubectl, Helm) do not send bearer tokens over plain HTTP, so ``tls=True`` adds an HTTPS
listener on its own port (``tls_url``, self-signed certificate ``ca_pem``) serving the same API.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twin.api import discovery, routing
from twin.api import tls as tls_support
from twin.api.escalation import check_escalation
from twin.api.eviction import evict
from twin.api.messages import (
    JSON,
    Request,
    Response,
    error_response,
    fault_response,
    from_api_error,
    json_response,
)
from twin.api.rest import ResourceVerbs
from twin.api.watching import WatchStream
from twin.faults import Faults
from twin.rbac import RequestAttributes, Rule, forbidden_message
from twin.resources import SERVICES
from twin.store import ApiError, Store, not_found

log = logging.getLogger(__name__)

RouteHandler = Callable[[str, str, dict[str, list[str]], bytes], tuple[int, str, bytes]]
ProxyHandler = Callable[[str, str, str, str, dict[str, list[str]]], tuple[int, str, bytes] | None]
Authorizer = Callable[[RequestAttributes], bool]

OPEN_PATHS = frozenset({"/version", "/healthz", "/readyz", "/livez"})
ADMIN_USER = "kubernetes-admin"
ANONYMOUS = "system:anonymous"
_LOG_LIMIT = 500_000  # records kept; the older half is dropped beyond this


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One served request, in the terms an authorizer would see it."""

    verb: str  # get, list, watch, create, update, patch, delete, deletecollection ("" for non-resource)
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    user: str
    path: str = ""


class ApiServer:
    """A Kubernetes API server over a Store; start() it, use ``url``, stop() it."""

    def __init__(self, store: Store, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, faults: Faults | None = None, tls: bool = False) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.token = token
        self.faults = faults or Faults()
        self.url = ""
        self.tls = tls
        self.tls_port = 0
        self.tls_url = ""  # "https://127.0.0.1:PORT" when tls, after start()
        self.ca_pem = b""  # the HTTPS listener's self-signed certificate (PEM) when tls
        self.request_log: list[RequestRecord] = []
        # What GET /version answers (the scenario's Kubernetes version: Twin sets it from cluster.version).
        self.version_info: dict[str, str] = dict(discovery.VERSION_INFO)
        self._verbs = ResourceVerbs(store)
        self._routes: list[tuple[str, RouteHandler]] = []
        self._users: dict[str, tuple[str, Authorizer, tuple[Rule, ...]]] = {}  # "Bearer <token>" -> user
        self._proxies: list[ProxyHandler] = []
        self._servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []
        self._streams: set[WatchStream] = set()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (HTTP, and HTTPS when ``tls``) and serve in background threads."""
        self.port = self._listen(self.port, tls=False)
        self.url = f"http://{self.host}:{self.port}"
        if self.tls:
            self.tls_port = self._listen(self.tls_port, tls=True)
            self.tls_url = f"https://{self.host}:{self.tls_port}"
            self.ca_pem = tls_support.serving_certificate()[0]

    def _listen(self, port: int, *, tls: bool) -> int:
        httpd = _HttpServer((self.host, port), _Handler)
        httpd.api = self
        if tls:
            httpd.socket = tls_support.server_context().wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"apiserver-{httpd.server_address[1]}", daemon=True)
        thread.start()
        self._servers.append((httpd, thread))
        return int(httpd.server_address[1])

    def stop(self) -> None:
        if not self._servers:
            return
        stoppers = [threading.Thread(target=httpd.shutdown) for httpd, _ in self._servers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        with self._lock:
            streams, connections = list(self._streams), list(self._connections)
        for stream in streams:
            stream.close()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for httpd, thread in self._servers:
            httpd.server_close()
            thread.join(timeout=5)
        self._servers = []

    def add_route(self, prefix: str, handler: RouteHandler) -> None:
        """Serve every path starting with ``prefix`` (after authentication) with ``handler``."""
        self._routes.append((prefix, handler))

    def add_user(self, token: str, user: str, authorize: Authorizer, rules: Iterable[Rule] = ()) -> None:
        """Accept ``token`` as ``user``, whose requests ``authorize`` must allow (else 403 Forbidden) and
        whose role writes may grant only ``rules`` (what the user holds) unless it may escalate or bind."""
        self._users[f"Bearer {token}"] = (user, authorize, tuple(rules))

    def add_service_proxy(self, handler: ProxyHandler) -> None:
        """Answer GET .../services/{name}[:port]/proxy/{path}; the first handler not returning None wins."""
        self._proxies.append(handler)

    # ---- serving -----------------------------------------------------------------------------

    def serve(self, req: Request) -> tuple[Response | WatchStream, RequestRecord]:
        """Answer one request; never raises."""
        info: dict[str, str] = {}
        try:
            result = self._serve(req, info)
        except ApiError as e:
            result = from_api_error(e)
        except Exception as e:  # a bug: answer 500 rather than dropping the connection
            log.exception("apiserver: %s %s failed", req.method, req.path)
            result = error_response(500, f"Internal error occurred: {e!r}", "InternalError")
        record = _record(info, result.status if isinstance(result, Response) else 200, req)
        log_ = self.request_log
        log_.append(record)
        if len(log_) > _LOG_LIMIT:
            del log_[: _LOG_LIMIT // 2]
        return result, record

    def _serve(self, req: Request, info: dict[str, str]) -> Response | WatchStream:
        path = req.path
        if path.rstrip("/") in OPEN_PATHS:
            path = path.rstrip("/")
            if req.method != "GET":
                return error_response(405, f"{req.method} is not supported on {path}")
            if path == "/version":
                return json_response(self.version_info)
            return Response(200, b"ok", "text/plain; charset=utf-8")
        authorize: Authorizer | None = None
        held: tuple[Rule, ...] = ()
        if self.token is not None or self._users:
            credential = req.header("authorization")
            if self.token is not None and credential == f"Bearer {self.token}":
                req.user = ADMIN_USER
            elif credential in self._users:
                req.user, authorize, held = self._users[credential]
            else:
                return error_response(401, "Unauthorized")
        for prefix, handler in self._routes:
            if path.startswith(prefix):
                if authorize is not None:
                    return error_response(403, f'forbidden: User "{req.user}" cannot '
                                               f'{req.method.lower()} path "{path}"', "Forbidden")
                status, content_type, body = handler(req.method, path, req.query, req.body)
                return Response(status, body, content_type)
        target: routing.Target | None
        try:
            target = routing.parse(path)
        except routing.NoRoute:
            target = None
            info["verb"] = req.method.lower() if req.method != "GET" else "get"  # a non-resource URL
        else:
            info.update(group=target.rt.group, resource=target.rt.plural, subresource=target.subresource or "",
                        namespace=target.namespace or "", name=target.name or "", verb=_verb(req, target))
        if authorize is not None:
            attributes = _record(info, 0, req)
            if not authorize(attributes):
                return error_response(403, forbidden_message(attributes, req.user), "Forbidden",
                                      {"name": attributes.name, "group": attributes.api_group,
                                       "kind": attributes.resource} if attributes.resource else None)
            if target is not None:
                check_escalation(self.store, req, target, authorize, held)
        fault = self.faults.api_fault_for(req.method, path)
        if fault is not None:
            return fault_response(fault.status, fault.retry_after)
        served = self._discovery(req)
        if served is not None:
            return served
        if target is None:
            return error_response(404, "the server could not find the requested resource", "NotFound")
        rt = target.rt
        if rt.namespaced and target.namespace is None and (target.name is not None or req.method != "GET"):
            return error_response(404, "the server could not find the requested resource", "NotFound")
        if target.subresource == "proxy":
            return self._proxy(req, target)
        if target.subresource == "eviction":
            if req.method != "POST":
                return error_response(405, f"{req.method} is not supported on pods/eviction")
            return evict(self.store, self.faults, req, target)
        if req.method == "GET":
            return self._verbs.get(req, target)
        if req.method == "POST":
            return self._verbs.create(req, target)
        if req.method == "PUT":
            return self._verbs.update(req, target)
        if req.method == "PATCH":
            return self._verbs.patch(req, target)
        if req.method == "DELETE":
            return self._verbs.delete(req, target)
        return error_response(405, f"{req.method} is not supported")

    def _discovery(self, req: Request) -> Response | None:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/openapi/"):
            return error_response(404, "the server could not find the requested resource", "NotFound")
        if path not in ("/api", "/apis") and not path.startswith(("/api/", "/apis/")):
            return None
        if req.method != "GET":
            return None
        aggregated = discovery.wants_aggregated(req.header("accept"))
        if path == "/api":
            if aggregated:
                return json_response(discovery.aggregated_discovery(core=True),
                                     content_type=discovery.AGGREGATED_CONTENT_TYPE)
            return json_response(discovery.api_versions(f"{self.host}:{self.port}"))
        if path == "/apis":
            if aggregated:
                return json_response(discovery.aggregated_discovery(core=False),
                                     content_type=discovery.AGGREGATED_CONTENT_TYPE)
            return json_response(discovery.api_group_list())
        parts = path.split("/")[1:]
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.api_resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = discovery.api_resource_list(parts[1], parts[2])
        elif parts[0] == "apis" and len(parts) == 2:
            groups = [g for g in discovery.api_group_list()["groups"] if g["name"] == parts[1]]
            doc = dict(groups[0], kind="APIGroup", apiVersion="v1") if groups else None
        else:
            return None
        if doc is None:
            return error_response(404, "the server could not find the requested resource", "NotFound")
        return json_response(doc)

    def _proxy(self, req: Request, t: routing.Target) -> Response:
        if t.rt is not SERVICES:
            return error_response(404, "the server could not find the requested resource", "NotFound")
        if req.method != "GET":
            return error_response(405, f"{req.method} is not supported on services/proxy")
        service, port = routing.split_service_name(t.name or "")
        for handler in list(self._proxies):
            answer = handler(t.namespace or "", service, port, t.rest, req.query)
            if answer is not None:
                status, content_type, body = answer
                return Response(status, body, content_type)
        if self.store.get(SERVICES, t.namespace, service) is None:
            raise not_found(SERVICES, service)
        return error_response(503, f'no endpoints available for service "{t.name}"', "ServiceUnavailable")

    # ---- bookkeeping for the HTTP layer --------------------------------------------------------

    def _track(self, items: set[Any], item: Any, add: bool) -> None:
        with self._lock:
            if add:
                items.add(item)
            else:
                items.discard(item)


def _record(info: dict[str, str], code: int, req: Request) -> RequestRecord:
    return RequestRecord(info.get("verb", ""), info.get("group", ""), info.get("resource", ""),
                         info.get("subresource", ""), info.get("namespace", ""), info.get("name", ""),
                         code, req.user, req.path)


def _verb(req: Request, t: routing.Target) -> str:
    method = req.method
    if method == "GET":
        if t.name is not None:
            return "get"
        watch = t.legacy_watch or (req.param("watch") or "").lower() in ("true", "1")
        return "watch" if watch else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if t.name is not None else "deletecollection"
    return method.lower()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    api: ApiServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("apiserver: connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.api._track(self.server.api._connections, self.connection, True)

    def finish(self) -> None:
        self.server.api._track(self.server.api._connections, self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self, method: str) -> None:
        api = self.server.api
        split = urlsplit(self.path)
        req = Request(method, split.path or "/", parse_qs(split.query, keep_blank_values=True),
                      {k.lower(): v for k, v in self.headers.items()}, self._read_body())
        result, _ = api.serve(req)
        if isinstance(result, WatchStream):
            self._stream(result)
        else:
            self._send(result, head_only=method == "HEAD")

    def _send(self, response: Response, head_only: bool = False) -> None:
        self.send_response_only(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        headers: list[bytes] = getattr(self, "_headers_buffer", [])
        payload = b"".join(headers) + b"\r\n" + (b"" if head_only else response.body)
        headers.clear()
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _client_gone(self) -> bool:
        """During a stream the client sends nothing: a readable socket means it closed (or broke) it."""
        try:
            return bool(select.select([self.connection], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def _stream(self, stream: WatchStream) -> None:
        api = self.server.api
        api._track(api._streams, stream, True)
        try:
            self.send_response_only(200)
            self.send_header("Content-Type", JSON)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()

            def write(data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

            stream.run(write, self._client_gone)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
            stream.close()
        finally:
            api._track(api._streams, stream, False)
