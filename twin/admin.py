"""The twin's admin API under ``/_twin/`` on the Kubernetes API port (same bearer token).

- ``GET /_twin/faults``: the current faults; ``PATCH /_twin/faults``: a partial JSON dict (400 on an
  unknown key or a bad fault). A request fault is a burst (``count``) or an outage (``seconds``, from
  now): ``{"api": [{"path": "^/api", "status": 503, "seconds": 60}]}``; EKS faults go under ``eks``
  (``{"action": "UpdateNodegroupConfig", "code": "ResourceInUseException", "count": 2}``).
- ``GET /_twin/disruptions``: PodDisruptionBudget violations the disruption controller recorded.
- ``GET /_twin/requests``: the API server's request log (``?since=N`` skips the first N records).
- ``GET /_twin/state``: every stored object by resource key.
- ``GET /_twin/cni``: every node's CNI config directory (``/etc/cni/net.d``): node name -> sorted file
  names, ``.cilium_bak`` backups included.
- ``GET /_twin/delays``: the delays the controllers imposed (``twin.delays``), ``?since=`` and ``?until=``
  (epoch seconds) keep those overlapping that window.
- ``GET /_twin/critical-path``: their union over time in the window ``?since=&until=`` (epoch seconds):
  ``total_s`` and the merged segments, each with the delays it came from (400 on a bad number).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from twin.delays import DelayLog
from twin.faults import Faults
from twin.store import Store

Response = tuple[int, str, bytes]
JSON = "application/json"
ROUTES = ("faults", "disruptions", "requests", "state", "cni", "delays", "critical-path")


class AdminApi:
    """A route handler for ``ApiServer.add_route("/_twin/", ...)``."""

    def __init__(
        self,
        *,
        store: Store,
        faults: Faults,
        request_log: Callable[[], list[Any]],
        disruptions: Callable[[], list[Any]],
        cni_configs: Callable[[], dict[str, list[str]]] = dict,
    ) -> None:
        self.store, self.faults = store, faults
        self.delays: DelayLog = store.delays
        self._request_log, self._disruptions = request_log, disruptions
        self._cni_configs = cni_configs

    def __call__(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        route = path.split("/_twin/", 1)[-1].strip("/")
        method = method.upper()
        if route == "faults" and method == "GET":
            return _json(200, self.faults.to_dict())
        if route == "faults" and method == "PATCH":
            return self._patch_faults(body)
        if route == "disruptions" and method == "GET":
            return _json(200, {"items": [_plain(d) for d in self._disruptions()]})
        if route == "requests" and method == "GET":
            since = int((query.get("since") or ["0"])[0])
            return _json(200, {"items": [_plain(r) for r in list(self._request_log())[since:]]})
        if route == "state" and method == "GET":
            return _json(
                200, {"resourceVersion": str(self.store.resource_version), "objects": self.store.dump()}
            )
        if route == "cni" and method == "GET":
            return _json(200, self._cni_configs())
        if route in ("delays", "critical-path") and method == "GET":
            try:
                start, end = (_epoch(query, key) for key in ("since", "until"))
            except ValueError as err:
                return _json(400, {"error": str(err)})
            if route == "delays":
                return _json(200, {"items": [d.to_dict() for d in self.delays.items(since=start, until=end)]})
            return _json(200, self.delays.critical_path(since=start, until=end).to_dict())
        if route in ROUTES:
            return _json(405, {"error": f"{method} not allowed on /_twin/{route}"})
        return _json(404, {"error": f"no admin route /_twin/{route}", "routes": list(ROUTES)})

    def _patch_faults(self, body: bytes) -> Response:
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            self.faults.update(changes)
        except (ValueError, TypeError) as err:
            return _json(400, {"error": str(err)})
        return _json(200, self.faults.to_dict())


def _epoch(query: dict[str, list[str]], key: str) -> float | None:
    values = query.get(key) or [""]
    if not values[0]:
        return None
    try:
        return float(values[0])
    except ValueError:
        raise ValueError(f"{key} must be seconds since the epoch, got {values[0]!r}") from None


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def _json(status: int, payload: Any) -> Response:
    return status, JSON, json.dumps(payload, default=str).encode()
