"""Resource paths: ``/api/v1/namespaces/{ns}/pods/{name}/status`` and friends, parsed into a Target.

Legacy ``/watch/`` paths (``/api/v1/watch/namespaces/{ns}/pods``) are understood as ``?watch=true``.
Segments are percent-decoded, so ``goldpinger%3A8080`` reads as ``goldpinger:8080``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from twin.resources import BY_GVR, NAMESPACES, ResourceType


@dataclass(frozen=True)
class Target:
    """What a resource request addresses."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None = None
    rest: str = ""  # the path after a proxy subresource
    legacy_watch: bool = False


class NoRoute(Exception):
    """The path names no resource the twin serves (404)."""


def parse(path: str) -> Target:
    """Parse a resource path; NoRoute when it names nothing served."""
    raw = path.split("/")
    if raw and raw[0] == "":
        raw = raw[1:]
    segments = [unquote(s) for s in raw]
    if len(segments) >= 2 and segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        raise NoRoute(path)
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    if "proxy" not in rest:
        while rest and rest[-1] == "":
            rest = rest[:-1]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest:
        raise NoRoute(path)
    rt = BY_GVR.get((group, version, rest[0]))
    if rt is None:
        raise NoRoute(path)
    if namespace is not None and not rt.namespaced:
        raise NoRoute(path)
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if name == "":
        raise NoRoute(path)
    if sub is not None and sub not in rt.subresources and not (rt is NAMESPACES and sub == "finalize"):
        raise NoRoute(path)
    proxy_rest = ""
    if sub == "proxy":
        proxy_rest = "/".join(rest[3:])
    elif len(rest) > 3:
        raise NoRoute(path)
    return Target(rt, namespace, name, sub, proxy_rest, legacy_watch)


def split_service_name(name: str) -> tuple[str, str]:
    """``[scheme:]name[:port]`` as the proxy subresource accepts it -> (service, port)."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    return name, ""
