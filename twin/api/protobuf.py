"""Request bodies in Kubernetes protobuf (``application/vnd.kubernetes.protobuf``), decoded into the dict the
same object's JSON would give.

The encoding: the magic bytes ``k8s\\x00``, then a ``runtime.Unknown`` message (1 ``typeMeta`` {1
``apiVersion``, 2 ``kind``}, 2 ``raw``, 3 ``contentEncoding``, 4 ``contentType``) whose ``raw`` is the
object's own message (proto2, from the types' ``generated.proto``; the object's message carries no
TypeMeta: the envelope's is put back as ``apiVersion``/``kind``). Decoded here, by a small wire-format
reader and a field-number table per message type: ``v1.Secret``, ``v1.ConfigMap`` and ``DeleteOptions``
(any group version: the API registers it in each), with ``ObjectMeta`` (owner references, managed fields).

Rules of the translation to JSON:
- A scalar the wire carries with its zero value ("", 0, false) is left out, as ``omitempty`` would, unless
  the Go field is a pointer (``immutable``, ``controller``, ``gracePeriodSeconds``...): then being on the
  wire means it was set. Empty maps and lists are left out too (nil and empty look alike on the wire).
- ``bytes`` values (Secret ``data``, ConfigMap ``binaryData``) become base64 strings, as JSON has them.
- A ``Time`` is RFC 3339 in UTC to the second; an empty ``Time`` message is the zero time and left out.
- ``int64`` varints are two's complement (negative numbers take ten bytes).
- Unknown field numbers are skipped (a newer client may send fields the twin does not know).
- A body without the magic, or malformed, is a 400; a ``contentEncoding`` or a type not in the table is a
  415 ``Status`` naming it, so the client can fall back to JSON.

What Helm sends (verified with helm-python-sdk 0.2.2, the Helm v4 engine on client-go, against the twin
with the stand-in chart and the real Cilium 1.16.5 chart; install with ``disable_openapi_validation`` and
``server_side_apply`` false, upgrade with ``server_side_apply`` "false"):
- Only the release storage (client-go's typed clientset) speaks protobuf. Its every request sends
  ``Accept: application/vnd.kubernetes.protobuf,application/json``: JSON is accepted, so the twin answers
  JSON (the real API server would pick protobuf, the client's first choice; content negotiation lets a
  server answer the second, and client-go decodes by the response's ``Content-Type``). No response is
  encoded as protobuf here.
- ``secret`` driver: reads ``GET .../secrets?labelSelector=name=<release>,owner=helm`` (``owner=helm``
  for a list) and ``GET .../secrets/<name>`` before each delete, without bodies. Writes send the Secret
  ``sh.helm.release.v1.<release>.v<N>`` as ``application/vnd.kubernetes.protobuf`` (typeMeta
  ``v1``/``Secret``): install ``POST`` v1 (``status=pending-install``) then ``PUT`` v1 (``deployed``);
  upgrade ``POST`` v2 (``pending-upgrade``), ``PUT`` v1 (``superseded``), ``PUT`` v2 (``deployed``);
  uninstall ``PUT`` (``uninstalling``), then per revision ``DELETE`` with a protobuf
  ``metav1.DeleteOptions{}`` (typeMeta ``v1``/``DeleteOptions``, no field set: 31 bytes).
- The Secret's ObjectMeta carries every string field even when empty (``generateName``, ``namespace``,
  ``selfLink``, ``uid``, ``resourceVersion``), ``generation`` 0, an empty ``creationTimestamp``; so a
  ``PUT`` has no ``resourceVersion`` (an unconditional update). Labels ``name``, ``owner=helm``,
  ``status``, ``version``, and ``createdAt`` (POST) / ``modifiedAt`` (PUT); ``data.release`` is the
  base64 text of the gzipped release JSON, sent as bytes (about 52 KB for the stand-in chart, 408 KB for
  the real one); ``type`` is ``helm.sh/release.v1``.
- ``configmap`` driver: the same requests on configmaps, the ConfigMap in protobuf (``data.release``).
- Everything else is JSON: ``/version``, discovery, and the chart's objects (lookups, ``POST``
  ``?fieldManager=...``, ``DELETE`` with ``{"propagationPolicy":"Background"}``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twin.store import ApiError

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_ZERO_TIME_SECONDS = -62135596800  # 0001-01-01T00:00:00Z, Go's zero time


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message of the expected type."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message: its JSON name and how its value is read.

    ``kind``: ``string``, ``int`` (int64), ``bool``, ``time``, ``message``,
    ``messages`` (repeated), ``strings`` (repeated), ``map_string``, ``map_bytes``, ``fields_v1`` (a
    ``FieldsV1``, whose ``Raw`` bytes are JSON). ``pointer``: a Go pointer field, kept even when zero.
    """

    name: str
    kind: str
    message: Message | None = None
    pointer: bool = False


Message = dict[int, Field]


def _s(name: str) -> Field:
    return Field(name, "string")


OWNER_REFERENCE: Message = {
    1: _s("kind"), 3: _s("name"), 4: _s("uid"), 5: _s("apiVersion"),
    6: Field("controller", "bool", pointer=True), 7: Field("blockOwnerDeletion", "bool", pointer=True),
}
MANAGED_FIELDS_ENTRY: Message = {
    1: _s("manager"), 2: _s("operation"), 3: _s("apiVersion"), 4: Field("time", "time"),
    6: _s("fieldsType"), 7: Field("fieldsV1", "fields_v1"), 8: _s("subresource"),
}
OBJECT_META: Message = {
    1: _s("name"), 2: _s("generateName"), 3: _s("namespace"), 4: _s("selfLink"), 5: _s("uid"),
    6: _s("resourceVersion"), 7: Field("generation", "int"), 8: Field("creationTimestamp", "time"),
    9: Field("deletionTimestamp", "time"), 10: Field("deletionGracePeriodSeconds", "int", pointer=True),
    11: Field("labels", "map_string"), 12: Field("annotations", "map_string"),
    13: Field("ownerReferences", "messages", OWNER_REFERENCE), 14: Field("finalizers", "strings"),
    17: Field("managedFields", "messages", MANAGED_FIELDS_ENTRY),
}
SECRET: Message = {
    1: Field("metadata", "message", OBJECT_META), 2: Field("data", "map_bytes"), 3: _s("type"),
    4: Field("stringData", "map_string"), 5: Field("immutable", "bool", pointer=True),
}
CONFIG_MAP: Message = {
    1: Field("metadata", "message", OBJECT_META), 2: Field("data", "map_string"),
    3: Field("binaryData", "map_bytes"), 4: Field("immutable", "bool", pointer=True),
}
PRECONDITIONS: Message = {1: Field("uid", "string", pointer=True), 2: Field("resourceVersion", "string", pointer=True)}
DELETE_OPTIONS: Message = {
    1: Field("gracePeriodSeconds", "int", pointer=True), 2: Field("preconditions", "message", PRECONDITIONS),
    3: Field("orphanDependents", "bool", pointer=True), 4: Field("propagationPolicy", "string", pointer=True),
    5: Field("dryRun", "strings"),
    6: Field("ignoreStoreReadErrorWithClusterBreakingPotential", "bool", pointer=True),
}
_TYPE_META: Message = {1: _s("apiVersion"), 2: _s("kind")}

# (apiVersion, kind) -> message; apiVersion None: any group version.
TYPES: dict[tuple[str | None, str], Message] = {
    ("v1", "Secret"): SECRET,
    ("v1", "ConfigMap"): CONFIG_MAP,
    (None, "DeleteOptions"): DELETE_OPTIONS,
}


# ---- the wire format -------------------------------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def wire_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """The (field number, wire type, value) triples of one message: an int for varint and fixed
    types, bytes for length-delimited ones. Groups (wire types 3, 4) are not Kubernetes' and refused."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _LEN:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ProtobufError(f"field {number}: {length} bytes announced, {len(buf) - pos} left")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > len(buf):
                raise ProtobufError(f"field {number}: truncated fixed{size * 8}")
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")
        yield number, wire, value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _expect(field: Field, wire: int, value: int | bytes, wanted: int) -> Any:
    if wire != wanted:
        raise ProtobufError(f"{field.name}: wire type {wire}, expected {wanted}")
    return value


def _text(field: Field, raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise ProtobufError(f"{field.name}: not UTF-8") from e


def _time(raw: bytes) -> str | None:
    """A ``Time`` (1 seconds, 2 nanos) as JSON has it; None for the zero time (an empty message)."""
    if not raw:
        return None
    seconds = 0
    for number, wire, value in wire_fields(raw):
        if number == 1 and wire == _VARINT:
            seconds = _int64(int(value))
    if seconds == _ZERO_TIME_SECONDS:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError) as e:
        raise ProtobufError(f"time out of range: {seconds} s") from e


def _fields_v1(field: Field, raw: bytes) -> Any:
    """A ``FieldsV1`` (1 ``Raw``: JSON bytes) as the JSON value it holds."""
    for number, wire, value in wire_fields(raw):
        if number == 1:
            try:
                return json.loads(_expect(field, wire, value, _LEN))
            except ValueError as e:
                raise ProtobufError(f"{field.name}: not JSON") from e
    return None


def _map_entry(field: Field, raw: bytes, value_bytes: bool) -> tuple[str, str]:
    key, val = "", b""
    for number, wire, value in wire_fields(raw):
        if number == 1:
            key = _text(field, _expect(field, wire, value, _LEN))
        elif number == 2:
            val = _expect(field, wire, value, _LEN)
    return key, base64.b64encode(val).decode() if value_bytes else _text(field, val)


def decode_message(buf: bytes, message: Message) -> dict[str, Any]:
    """One message as the JSON object of its type (the rules in the module docstring)."""
    out: dict[str, Any] = {}
    for number, wire, value in wire_fields(buf):
        field = message.get(number)
        if field is None:
            continue
        kind = field.kind
        if kind == "string":
            text = _text(field, _expect(field, wire, value, _LEN))
            if text or field.pointer:
                out[field.name] = text
        elif kind == "int":
            number_ = _int64(_expect(field, wire, value, _VARINT))
            if number_ or field.pointer:
                out[field.name] = number_
        elif kind == "bool":
            flag = bool(_expect(field, wire, value, _VARINT))
            if flag or field.pointer:
                out[field.name] = flag
        elif kind == "time":
            stamp = _time(_expect(field, wire, value, _LEN))
            if stamp is not None:
                out[field.name] = stamp
        elif kind == "fields_v1":
            out[field.name] = _fields_v1(field, _expect(field, wire, value, _LEN))
        elif kind == "message":
            assert field.message is not None
            out[field.name] = decode_message(_expect(field, wire, value, _LEN), field.message)
        elif kind == "messages":
            assert field.message is not None
            out.setdefault(field.name, []).append(decode_message(_expect(field, wire, value, _LEN),
                                                                 field.message))
        elif kind == "strings":
            out.setdefault(field.name, []).append(_text(field, _expect(field, wire, value, _LEN)))
        elif kind in ("map_string", "map_bytes"):
            key, val = _map_entry(field, _expect(field, wire, value, _LEN), kind == "map_bytes")
            out.setdefault(field.name, {})[key] = val
        else:  # pragma: no cover - a table error
            raise AssertionError(f"unknown field kind {kind}")
    return out


# ---- the envelope ----------------------------------------------------------------------------------

def message_for(api_version: str, kind: str) -> Message | None:
    """The field table for ``apiVersion``/``kind``, or None when the twin does not decode that type."""
    return TYPES.get((api_version, kind)) or TYPES.get((None, kind))


def decode(body: bytes) -> dict[str, Any]:
    """A Kubernetes protobuf body as the JSON dict of the same object.

    400 ``BadRequest`` when it lacks the magic or is malformed; 415 ``UnsupportedMediaType`` for a
    ``contentEncoding`` or a type the twin has no table for (the message names it)."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "the body of the request is not Kubernetes protobuf: it does not "
                                          "start with the magic bytes k8s\\x00")
    try:
        type_meta: dict[str, Any] = {}
        raw, encoding = b"", ""
        for number, wire, value in wire_fields(body[len(MAGIC):]):
            if wire != _LEN:
                continue
            assert isinstance(value, bytes)
            if number == 1:
                type_meta = decode_message(value, _TYPE_META)
            elif number == 2:
                raw = value
            elif number == 3:
                encoding = value.decode(errors="replace")
        api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
        if encoding:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the twin does not decode protobuf with contentEncoding {encoding!r} "
                           f"({kind or 'no kind'}); send it unencoded or as application/json")
        message = message_for(api_version, kind)
        if message is None:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the twin cannot decode {kind or '(no kind)'} ({api_version or 'no apiVersion'}) "
                           f"from {PROTOBUF}; it decodes {', '.join(sorted(k for _, k in TYPES))}: "
                           f"send it as application/json")
        obj = decode_message(raw, message)
    except ProtobufError as e:
        raise ApiError(400, "BadRequest", f"unable to decode the protobuf body: {e}") from e
    return {"apiVersion": api_version, "kind": kind, **obj}
