"""A wire-level fake Weaviate: the REST and gRPC surface ``weaviate-client`` v4 uses, with real
semantics, for the ``remote::weaviate`` tier (no Weaviate server can run here: its embedded mode
downloads a binary).

Built from Weaviate's REST reference (``/v1/meta``, ``/v1/.well-known/ready|live``,
``/v1/schema`` create / get / delete / add property) and the client's own protobufs
(``weaviate.v1.Weaviate``: Search, BatchObjects, BatchDelete, Aggregate; ``grpc.health.v1``
Check). What it does is computed, never canned:

- Search: ``near_vector`` ranks by the collection's distance (cosine: ``1 - cos``) over the stored
  vectors; ``bm25`` scores the query's words (lowercased alphanumeric tokens, English stop words
  dropped, k1 1.2, b 0.75) over the searchable text properties; no search is a listing ordered by
  uuid with the ``after`` cursor. Filters are evaluated on every object (Equal / NotEqual / the
  orderings / IsNull / And / Or / Not) with Weaviate's rules as the docs give them: a property not
  in the schema is an error, a value must fit the property's type (``value_int`` on an int,
  ``value_number`` on a number...), ``field`` tokenization compares the whole trimmed value,
  NotEqual also matches objects without the property, IsNull needs ``indexNullState``.
- BatchObjects: validates each object (collection, vector dimension, properties against the
  schema: auto-schema off, so a writer must add properties first) and replaces by uuid.
- BatchDelete deletes what the filter matches (at most ``QUERY_MAXIMUM_RESULTS`` per call, as the
  server does); Aggregate counts (optionally filtered).
- ``api_key``: every call but ready / live needs ``Authorization: Bearer <key>`` (REST) or the
  ``authorization`` metadata (gRPC).

``stop()`` / ``start()`` take both listeners down and up again on the same ports, keeping the
data (the "server is down" tests). Requests are recorded (``calls``) for tests that look at what
the client sent.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import struct
import threading
import time
import uuid as uuid_lib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import struct_pb2
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

VERSION = "1.32.0"
QUERY_MAXIMUM_RESULTS = 10_000
_CLASS_NAME = re.compile(r"\A[A-Z][_0-9A-Za-z]{0,254}\Z")
_PROP_NAME = re.compile(r"\A[_A-Za-z][_0-9A-Za-z]{0,230}\Z")
_WORDS = re.compile(r"[0-9a-z]+")
_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)  # Weaviate's "en" preset
_DISTANCES = ("cosine", "dot", "l2-squared")
_F = base_pb2.Filters
# What the server fills into an HNSW index config it was given without them (its documented
# defaults; the client reads them back).
_HNSW_DEFAULTS: dict[str, Any] = {
    "cleanupIntervalSeconds": 300, "dynamicEfMin": 100, "dynamicEfMax": 500,
    "dynamicEfFactor": 8, "ef": -1, "efConstruction": 128, "flatSearchCutoff": 40000,
    "maxConnections": 32, "skip": False, "vectorCacheMaxObjects": 1_000_000_000_000,
}  # fmt: skip


class FakeError(Exception):
    """An error the server answers with (gRPC status / HTTP 422 and its message)."""


def _tokens(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


class _Collection:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.objects: dict[str, dict[str, Any]] = {}  # uuid → {"properties", "vector"}

    @property
    def name(self) -> str:
        return str(self.schema["class"])

    def prop(self, name: str) -> dict[str, Any]:
        for prop in self.schema.get("properties", []):
            if prop["name"] == name:
                return dict(prop)
        raise FakeError(
            f"no such prop with name '{name}' found in class '{self.name}' in the schema"
        )

    def vector_name(self) -> str | None:
        """The named vector (``vectorConfig``, one here), or None: the legacy unnamed one."""
        named = self.schema.get("vectorConfig") or {}
        return next(iter(named), None)

    def distance_metric(self) -> str:
        name = self.vector_name()
        config = self.schema["vectorConfig"][name] if name else self.schema
        return str(config.get("vectorIndexConfig", {}).get("distance", "cosine"))

    def null_state(self) -> bool:
        return bool(self.schema.get("invertedIndexConfig", {}).get("indexNullState", False))


class FakeWeaviate:
    """The fake server: ``http_port`` (REST) and ``grpc_port``; data survives stop/start."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.http_port = _free_port()
        self.grpc_port = _free_port()
        self.collections: dict[str, _Collection] = {}
        self.calls: list[str] = []
        # A slow server: seconds each gRPC method (e.g. "BatchObjects") takes before answering.
        self.latency: dict[str, float] = {}
        # The server's QUERY_MAXIMUM_RESULTS (a query's limit + offset, a batch delete's size).
        self.max_results = QUERY_MAXIMUM_RESULTS
        self._lock = threading.RLock()
        self._http: ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()  # open REST connections (keep-alive)
        self._grpc: grpc.Server | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        handler = _rest_handler(self)
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        server = grpc.server(ThreadPoolExecutor(max_workers=8))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self), server)
        server.add_generic_rpc_handlers([_health_handler(self)])
        server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        server.start()
        self._grpc = server

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        # A server that goes away cuts its keep-alive connections too.
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stop()

    # --- auth ------------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        return self.api_key is None or header == f"Bearer {self.api_key}"

    # --- schema (REST) -------------------------------------------------------------------------

    def create_class(self, schema: dict[str, Any]) -> dict[str, Any]:
        name = schema.get("class")
        if not isinstance(name, str) or not _CLASS_NAME.match(name):
            raise FakeError(f"'{name}' is not a valid class name")
        named = schema.get("vectorConfig") or {}
        if len(named) > 1:
            raise FakeError("this fake keeps one vector per object")
        for config in [schema, *named.values()]:
            vectorizer = config.get("vectorizer", "none")
            if vectorizer not in ("none", {"none": {}}):
                raise FakeError("this fake keeps self-provided vectors only (vectorizer none)")
        index = (next(iter(named.values())) if named else schema).setdefault(
            "vectorIndexConfig", {}
        )
        distance = index.setdefault("distance", "cosine")
        if distance not in _DISTANCES:
            raise FakeError(f"unsupported distance {distance!r}")
        for key, value in _HNSW_DEFAULTS.items():
            index.setdefault(key, value)
        for prop in schema.setdefault("properties", []):
            self._check_prop(prop)
        schema.setdefault("vectorizer", "none")
        inverted = schema.setdefault("invertedIndexConfig", {})
        inverted.setdefault("bm25", {"b": 0.75, "k1": 1.2})
        inverted.setdefault("indexNullState", False)
        with self._lock:
            if any(n.lower() == name.lower() for n in self.collections):
                raise FakeError(f"class name {name!r} already exists")
            self.collections[name] = _Collection(schema)
        return schema

    @staticmethod
    def _check_prop(prop: dict[str, Any]) -> None:
        name = prop.get("name")
        if not isinstance(name, str) or not _PROP_NAME.match(name):
            raise FakeError(f"'{name}' is not a valid property name")
        kind = (prop.get("dataType") or [None])[0]
        if kind not in ("text", "number", "int", "boolean"):
            raise FakeError(f"this fake has no data type {kind!r}")
        # The server fills in what was left out (and answers with it, as GET /v1/schema does).
        if kind == "text":
            prop.setdefault("tokenization", "word")
        prop.setdefault("indexFilterable", True)
        prop.setdefault("indexSearchable", kind == "text")
        prop.setdefault("indexRangeFilters", False)

    def add_property(self, name: str, prop: dict[str, Any]) -> dict[str, Any]:
        self._check_prop(prop)
        with self._lock:
            collection = self._collection(name)
            props = collection.schema["properties"]
            if any(p["name"].lower() == prop["name"].lower() for p in props):
                raise FakeError(f"property {prop['name']!r} already exists")
            props.append(prop)
        return prop

    def _collection(self, name: str) -> _Collection:
        collection = self.collections.get(name)
        if collection is None:
            raise FakeError(f"class {name!r} not found", "not_found")
        return collection

    # --- objects (gRPC) ------------------------------------------------------------------------

    def batch(self, request: batch_pb2.BatchObjectsRequest) -> batch_pb2.BatchObjectsReply:
        errors = []
        with self._lock:
            for i, obj in enumerate(request.objects):
                try:
                    self._put(obj)
                except FakeError as exc:
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=i, error=str(exc)))
        return batch_pb2.BatchObjectsReply(took=0.0, errors=errors)

    def _put(self, obj: batch_pb2.BatchObject) -> None:
        if obj.tenant:
            raise FakeError("multi-tenancy is not enabled for this class")
        collection = self._collection(obj.collection)
        vector = _vector_of(obj)
        if not vector:
            raise FakeError("an object of a collection without a vectorizer needs a vector")
        if not all(math.isfinite(x) for x in vector):
            raise FakeError("the vector holds NaN or infinity")
        for other in collection.objects.values():
            if len(other["vector"]) != len(vector):
                raise FakeError(
                    f"new node has a vector with length {len(vector)}. Existing nodes have "
                    f"vectors with length {len(other['vector'])}"
                )
            break
        properties: dict[str, Any] = {}
        given = struct_pb2_to_dict(obj.properties.non_ref_properties)
        for key, value in given.items():
            prop = collection.prop(key)  # auto-schema is off: unknown properties are refused
            if value is None:
                continue
            properties[key] = _coerce(prop, value)
        str(uuid_lib.UUID(obj.uuid))  # a malformed uuid raises
        collection.objects[obj.uuid] = {"properties": properties, "vector": vector}

    def delete(
        self, request: batch_delete_pb2.BatchDeleteRequest
    ) -> batch_delete_pb2.BatchDeleteReply:
        with self._lock:
            collection = self._collection(request.collection)
            matched = [
                u
                for u in sorted(collection.objects)
                if _matches(collection, request.filters, collection.objects[u]["properties"])
            ]
            gone = matched[: self.max_results]
            if not request.dry_run:
                for u in gone:
                    del collection.objects[u]
        return batch_delete_pb2.BatchDeleteReply(
            took=0.0, failed=0, matches=len(matched), successful=len(gone)
        )

    def aggregate(self, request: aggregate_pb2.AggregateRequest) -> aggregate_pb2.AggregateReply:
        with self._lock:
            collection = self._collection(request.collection)
            count = sum(
                1
                for o in collection.objects.values()
                if not request.HasField("filters")
                or _matches(collection, request.filters, o["properties"])
            )
        return aggregate_pb2.AggregateReply(
            single_result=aggregate_pb2.AggregateReply.Single(objects_count=count)
        )

    def search(self, request: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply:
        if request.tenant:
            raise FakeError("multi-tenancy is not enabled for this class")
        for unsupported in ("hybrid_search", "near_object", "near_text", "group_by", "generative"):
            if request.HasField(unsupported):
                raise FakeError(f"this fake does not implement {unsupported}")
        limit = request.limit or 10
        if limit + request.offset > self.max_results:
            raise FakeError(
                f"query maximum results exceeded: limit {limit} + offset {request.offset} > "
                f"{self.max_results}"
            )
        with self._lock:
            collection = self._collection(request.collection)
            items = sorted(collection.objects.items())
            if request.HasField("filters"):
                if request.after:
                    raise FakeError("the cursor (after) cannot be combined with filters")
                items = [
                    (u, o)
                    for u, o in items
                    if _matches(collection, request.filters, o["properties"])
                ]
            scored: list[tuple[str, dict[str, Any], float | None, float | None]]
            if request.HasField("near_vector"):
                query = _near_vector(request.near_vector)
                metric = collection.distance_metric()
                distances = [(u, o, _distance(metric, query, o["vector"])) for u, o in items]
                distances.sort(key=lambda item: (item[2], item[0]))
                scored = [(u, o, d, None) for u, o, d in distances]
            elif request.HasField("bm25_search"):
                scores = _bm25(collection, request.bm25_search, items)
                scored = [(u, o, None, s) for u, o, s in scores]
            else:
                if request.after:
                    items = [(u, o) for u, o in items if u > request.after]
                scored = [(u, o, None, None) for u, o in items]
            page = scored[request.offset : request.offset + limit]
            results = [self._result(collection, request, *item) for item in page]
        return search_get_pb2.SearchReply(took=0.0, results=results)

    @staticmethod
    def _result(
        collection: _Collection,
        request: search_get_pb2.SearchRequest,
        uuid: str,
        obj: dict[str, Any],
        distance: float | None,
        score: float | None,
    ) -> search_get_pb2.SearchResult:
        wanted = request.properties
        names = (
            [p["name"] for p in collection.schema["properties"]]
            if wanted.return_all_nonref_properties
            else list(wanted.non_ref_properties)
        )
        fields = {}
        for name in names:
            if name not in obj["properties"]:
                continue
            fields[name] = _value(collection.prop(name), obj["properties"][name])
        meta = search_get_pb2.MetadataResult(id=uuid, id_as_bytes=uuid_lib.UUID(uuid).bytes)
        name = collection.vector_name()
        packed = struct.pack(f"<{len(obj['vector'])}f", *obj["vector"])
        if name is not None and (request.metadata.vector or name in request.metadata.vectors):
            meta.vectors.append(
                base_pb2.Vectors(
                    name=name, vector_bytes=packed, type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32
                )
            )
        elif name is None and request.metadata.vector:
            meta.vector_bytes = packed
        if distance is not None and request.metadata.distance:
            meta.distance, meta.distance_present = distance, True
        if score is not None and request.metadata.score:
            meta.score, meta.score_present = score, True
        return search_get_pb2.SearchResult(
            properties=search_get_pb2.PropertiesResult(
                non_ref_props=properties_pb2.Properties(fields=fields)
            ),
            metadata=meta,
        )


# --- values, filters, ranking ----------------------------------------------------------------------


def struct_pb2_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(value)


def _coerce(prop: dict[str, Any], value: Any) -> Any:
    kind = prop["dataType"][0]
    if kind == "text" and isinstance(value, str):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if (
        kind == "int"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and float(value).is_integer()
    ):
        return int(value)
    raise FakeError(f"invalid {kind} property '{prop['name']}': {value!r}")


def _value(prop: dict[str, Any], value: Any) -> properties_pb2.Value:
    kind = prop["dataType"][0]
    if kind == "text":
        return properties_pb2.Value(text_value=value)
    if kind == "boolean":
        return properties_pb2.Value(bool_value=value)
    if kind == "int":
        return properties_pb2.Value(int_value=value)
    return properties_pb2.Value(number_value=value)


def _vector_of(obj: batch_pb2.BatchObject) -> list[float]:
    if obj.vector_bytes:
        return list(struct.unpack(f"<{len(obj.vector_bytes) // 4}f", obj.vector_bytes))
    if obj.vectors:
        raw = obj.vectors[0].vector_bytes
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return list(obj.vector)


def _near_vector(near: Any) -> list[float]:
    raw = b""
    if near.vector_bytes:
        raw = near.vector_bytes
    elif near.vectors:
        raw = near.vectors[0].vector_bytes
    elif near.vector_for_targets:
        target = near.vector_for_targets[0]
        raw = target.vector_bytes or (target.vectors[0].vector_bytes if target.vectors else b"")
    elif near.vector_per_target:
        raw = next(iter(near.vector_per_target.values()))
    else:
        return list(near.vector)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _distance(metric: str, a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise FakeError(f"vector search: the query has {len(a)} dimensions, the index {len(b)}")
    if metric == "l2-squared":
        return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    if metric == "dot":
        return -dot
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return 1.0 - (dot / norms if norms else 0.0)


def _bm25(
    collection: _Collection, bm25: Any, items: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any], float]]:
    """BM25 (k1 1.2, b 0.75) of the query's words over the searchable text properties; the
    collection's document frequencies, only objects with a positive score, best first."""
    props = list(bm25.properties) or [
        p["name"]
        for p in collection.schema["properties"]
        if p["dataType"][0] == "text" and p.get("indexSearchable", True)
    ]
    for name in props:
        if not collection.prop(name).get("indexSearchable", True):
            raise FakeError(f"property {name!r} is not searchable")
    words = [w for w in dict.fromkeys(_tokens(bm25.query)) if w not in _STOP_WORDS]
    docs = {
        u: _tokens(" ".join(str(o["properties"].get(p, "")) for p in props))
        for u, o in collection.objects.items()
    }
    n = len(docs) or 1
    average = sum(len(d) for d in docs.values()) / n or 1.0
    frequency = Counter(w for d in docs.values() for w in set(d))
    out = []
    for u, o in items:
        counts = Counter(docs[u])
        score = 0.0
        for w in words:
            tf = counts.get(w, 0)
            if tf:
                idf = math.log(1 + (n - frequency[w] + 0.5) / (frequency[w] + 0.5))
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(docs[u]) / average))
        if score > 0:
            out.append((u, o, score))
    out.sort(key=lambda item: (-item[2], item[0]))
    return out


def _filter_value(node: base_pb2.Filters) -> tuple[str, Any]:
    which = node.WhichOneof("test_value")
    if which is None:
        raise FakeError("a filter needs a value")
    value = getattr(node, which)
    if which.endswith("_array"):
        value = list(value.values)
    return which, value


def _matches(collection: _Collection, node: base_pb2.Filters, props: dict[str, Any]) -> bool:
    op = node.operator
    if op == _F.OPERATOR_AND:
        return all(_matches(collection, child, props) for child in node.filters)
    if op == _F.OPERATOR_OR:
        return any(_matches(collection, child, props) for child in node.filters)
    if op == _F.OPERATOR_NOT:
        return not all(_matches(collection, child, props) for child in node.filters)
    if node.HasField("target"):
        name = node.target.property
    elif node.on:
        name = node.on[0]
    else:
        raise FakeError("a filter names no property")
    prop = collection.prop(name)
    kind = prop["dataType"][0]
    which, want = _filter_value(node)
    have = props.get(name)
    if op == _F.OPERATOR_IS_NULL:
        if not collection.null_state():
            raise FakeError(
                "Nullstate must be indexed to be filterable! Add `indexNullState: true`"
            )
        if which != "value_boolean":
            raise FakeError("IsNull needs a boolean value")
        return (have is None) == want
    expected = {"text": "value_text", "number": "value_number", "int": "value_int",
                "boolean": "value_boolean"}[kind]  # fmt: skip
    if which != expected:
        raise FakeError(f"data type filter cannot use {which} on type {kind}")
    if kind == "text" and prop.get("tokenization") == "field":
        want = want.strip()
    if op == _F.OPERATOR_EQUAL:
        return have is not None and _equal(prop, have, want)
    if op == _F.OPERATOR_NOT_EQUAL:
        # NotEqual is the complement of Equal: objects without the property match too.
        return have is None or not _equal(prop, have, want)
    if kind == "boolean":
        raise FakeError("booleans compare with Equal / NotEqual only")
    if have is None:
        return False
    if kind == "text":
        have = have.strip() if prop.get("tokenization") == "field" else have
    match op:
        case _F.OPERATOR_GREATER_THAN:
            return bool(have > want)
        case _F.OPERATOR_GREATER_THAN_EQUAL:
            return bool(have >= want)
        case _F.OPERATOR_LESS_THAN:
            return bool(have < want)
        case _F.OPERATOR_LESS_THAN_EQUAL:
            return bool(have <= want)
    raise FakeError(f"this fake does not implement filter operator {op}")


def _equal(prop: dict[str, Any], have: Any, want: Any) -> bool:
    if prop["dataType"][0] != "text":
        return bool(have == want)
    tokenization = prop.get("tokenization")
    if tokenization == "field":
        return bool(have.strip() == want)
    # word tokenization: every word of the value is among the property's words
    return set(_tokens(want)) <= set(_tokens(have))


# --- the listeners ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rest_handler(fake: FakeWeaviate) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._sockets.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake._sockets.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            fake.calls.append(f"{method} {path}")
            if path in ("/v1/.well-known/ready", "/v1/.well-known/live"):
                return self._send(200)
            if path == "/v1/.well-known/openid-configuration":
                return self._send(404)
            if not fake.authorized(self.headers.get("Authorization")):
                return self._send(401, {"code": 401, "message": "anonymous access not enabled"})
            parts = path.split("/")[2:]
            try:
                if parts == ["meta"] and method == "GET":
                    return self._send(200, {"version": VERSION, "hostname": "fake", "modules": {},
                                            "grpcMaxMessageSize": 104858000})  # fmt: skip
                if parts == ["schema"] and method == "GET":
                    with fake._lock:
                        classes = [c.schema for c in fake.collections.values()]
                    return self._send(200, {"classes": classes})
                if parts == ["schema"] and method == "POST":
                    return self._send(200, fake.create_class(self._body()))
                if len(parts) == 2 and parts[0] == "schema":
                    name = parts[1]
                    if method == "GET":
                        with fake._lock:
                            known = fake.collections.get(name)
                        return self._send(200, known.schema) if known else self._send(404)
                    if method == "DELETE":
                        with fake._lock:
                            fake.collections.pop(name, None)
                        return self._send(200)
                adding = method == "POST" and len(parts) == 3
                if adding and parts[0] == "schema" and parts[2] == "properties":
                    return self._send(200, fake.add_property(parts[1], self._body()))
            except FakeError as exc:
                status = 404 if exc.args[1:] == ("not_found",) else 422
                return self._send(status, {"error": [{"message": exc.args[0]}]})
            return self._send(404, {"error": [{"message": f"no route {method} {path}"}]})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_PUT(self) -> None:
            self._route("PUT")

    return Handler


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, fake: FakeWeaviate) -> None:
        self.fake = fake

    def _call(self, name: str, context: grpc.ServicerContext, action: Callable[[], Any]) -> Any:
        self.fake.calls.append(f"grpc {name}")
        if self.fake.latency.get(name):
            time.sleep(self.fake.latency[name])
        headers = dict(context.invocation_metadata())
        if not self.fake.authorized(headers.get("authorization")):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "anonymous access not enabled")
        try:
            return action()
        except FakeError as exc:
            status = (
                grpc.StatusCode.NOT_FOUND
                if exc.args[1:] == ("not_found",)
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            context.abort(status, exc.args[0])

    def Search(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call("Search", context, lambda: self.fake.search(request))

    def BatchObjects(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call("BatchObjects", context, lambda: self.fake.batch(request))

    def BatchDelete(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call("BatchDelete", context, lambda: self.fake.delete(request))

    def Aggregate(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call("Aggregate", context, lambda: self.fake.aggregate(request))


def _health_handler(fake: FakeWeaviate) -> grpc.GenericRpcHandler:
    def check(request: Any, context: grpc.ServicerContext) -> Any:
        fake.calls.append("grpc Health/Check")
        return health_weaviate_pb2.WeaviateHealthCheckResponse(
            status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
        )

    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check,
                request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
                response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
            )
        },
    )


@contextmanager
def running(*, api_key: str | None = None) -> Iterator[FakeWeaviate]:
    fake = FakeWeaviate(api_key=api_key)
    try:
        yield fake
    finally:
        fake.close()
