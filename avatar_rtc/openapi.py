"""The OpenAPI 3 description of the HTTP API, served at GET /openapi.json.

Written by hand from small helpers, route by route; a test checks that its paths and
methods are exactly the app's routes, so a new route without a description fails.
docs/api.md stays the prose reference.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from avatar_rtc.admin.params import MAX_LIMIT

Json = dict[str, Any]

ERROR: Json = {"$ref": "#/components/schemas/Error"}
ANY_OBJECT: Json = {"type": "object"}
UUID: Json = {"type": "string", "format": "uuid"}
TRACK: Json = {"name": "track", "in": "query", "schema": {"enum": ["user", "agent"]}}


def _json(schema: Json, text: str) -> Json:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


def _binary(media_type: str, text: str) -> Json:
    return {"description": text,
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}


def _errors(*statuses: int) -> Json:
    return {str(s): _json(ERROR, "an error; the message says what was wrong")
            for s in statuses}


def _query(name: str, schema: Json) -> Json:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _path(name: str = "id") -> Json:
    return {"name": name, "in": "path", "required": True, "schema": UUID}


PAGE = [_query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        _query("offset", {"type": "integer", "minimum": 0})]
# Every admin route: the token (when set), loopback-only without one, storage state.
ADMIN_ERRORS = (400, 401, 403, 404, 503)


def _op(summary: str, responses: Json, *, parameters: list[Json] | None = None,
        body: Json | None = None, tag: str = "call") -> Json:
    operation: Json = {"summary": summary, "tags": [tag], "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


def _admin(summary: str, ok: Json, *, parameters: list[Json] | None = None,
           body: Json | None = None, errors: tuple[int, ...] = ()) -> Json:
    responses = {**ok, **_errors(*ADMIN_ERRORS, *errors)}
    return _op(summary, responses, parameters=parameters, body=body, tag="admin")


def _json_body(schema: Json) -> Json:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


OFFER: Json = {
    "type": "object", "required": ["type", "sdp"],
    "properties": {
        "type": {"const": "offer"},
        "sdp": {"type": "string", "minLength": 1, "maxLength": 32 * 1024},
        "voice": {"type": ["string", "null"]},
        "echo_cancellation": {"type": ["boolean", "null"]},
    },
}
ANSWER: Json = {
    "type": "object", "required": ["type", "sdp", "session_id"],
    "properties": {"type": {"const": "answer"}, "sdp": {"type": "string"},
                   "session_id": UUID},
}
PROFILE_FORM: Json = {
    "type": "object", "required": ["audio", "name"],
    "properties": {
        "audio": {"type": "string", "format": "binary"},
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": {"type": "string", "maxLength": 2000},
        "reference_text": {"type": "string", "maxLength": 2000},
        "backend": {"type": "string"},
        "voice": {"type": "string"},
        "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0},
    },
}
PROFILE_PATCH: Json = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": {"type": "string", "maxLength": 2000},
        "reference_text": {"type": "string", "maxLength": 2000},
        "voice": {"type": "string"},
        "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0},
    },
}
SYNTHESIZE: Json = {"type": "object", "required": ["text"],
                    "properties": {"text": {"type": "string", "minLength": 1,
                                            "maxLength": 500}}}
PAGE_OF: Json = {"type": "object", "required": ["items", "total", "limit", "offset"],
                 "properties": {"items": {"type": "array"}, "total": {"type": "integer"},
                                "limit": {"type": "integer"}, "offset": {"type": "integer"}}}
HTML = _binary("text/html", "the page")
WAV = _binary("audio/wav", "WAV, mono 24 kHz")


def _paths(metrics: bool) -> Json:
    paths: Json = {
        "/": {"get": _op("the call page", {"200": HTML}, tag="pages")},
        "/health": {"get": _op("readiness, loaded models, calls", {
            "200": _json(ANY_OBJECT, "ready"), "503": _json(ANY_OBJECT, "loading or failed")})},
        "/ready": {"get": _op("whether this worker takes a call now (load balancers)", {
            "200": _json(ANY_OBJECT, "ready"),
            "503": _json(ANY_OBJECT, "full, draining, loading or failed")})},
        "/offer": {"post": _op(
            "start a call: an SDP offer in, the answer out",
            {"200": _json(ANSWER, "the answer"), **_errors(400, 408, 413, 429, 500, 503)},
            body=_json_body(OFFER))},
        "/api/ice": {"get": _op("the call page's ICE servers and transport policy, with "
                                "TURN credentials issued for this request", {
            "200": _json(ANY_OBJECT, "iceServers and iceTransportPolicy")})},
        "/api/voices": {"get": _op("voices the call page may offer", {
            "200": _json(ANY_OBJECT, "the default voice and the profiles"),
            **_errors(503)})},
        "/openapi.json": {"get": _op("this document", {"200": _json(ANY_OBJECT, "OpenAPI 3")})},
        "/admin": {"get": _op("redirects to /admin/", {"302": {"description": "to /admin/"}},
                              tag="pages")},
        "/admin/": {"get": _op("the voice profiles page", {"200": HTML}, tag="pages")},
        "/admin/calls": {"get": _op("the call history page", {"200": HTML}, tag="pages")},
        "/admin/api/backends": {"get": _admin("TTS backends and installed voices", {
            "200": _json(ANY_OBJECT, "backends")})},
        "/admin/api/profiles": {
            "get": _admin("a page of voice profiles", {"200": _json(PAGE_OF, "a page")},
                          parameters=PAGE),
            "post": _admin("upload a voice profile", {"201": _json(ANY_OBJECT, "the profile")},
                           body={"required": True, "content": {
                               "multipart/form-data": {"schema": PROFILE_FORM}}},
                           errors=(413, 415, 422, 429)),
        },
        "/admin/api/profiles/{id}": {
            "parameters": [_path()],
            "get": _admin("a voice profile", {"200": _json(ANY_OBJECT, "the profile")}),
            "patch": _admin("edit a voice profile", {"200": _json(ANY_OBJECT, "the profile")},
                            body=_json_body(PROFILE_PATCH), errors=(429,)),
            "delete": _admin("delete a voice profile and its files",
                             {"204": {"description": "deleted"}}, errors=(429,)),
        },
        "/admin/api/profiles/{id}/audio": {
            "parameters": [_path()],
            "get": _admin("the profile's reference clip", {"200": WAV}),
        },
        "/admin/api/profiles/{id}/synthesize": {
            "parameters": [_path()],
            "post": _admin("a sentence in the profile's voice", {"200": WAV},
                           body=_json_body(SYNTHESIZE), errors=(409, 422, 429)),
        },
        "/admin/api/calls": {"get": _admin(
            "a page of stored calls", {"200": _json(PAGE_OF, "a page")},
            parameters=[*PAGE, _query("since", {"type": "string"}),
                        _query("until", {"type": "string"})])},
        "/admin/api/calls/{id}": {
            "parameters": [_path()],
            "get": _admin("a call with its turns", {"200": _json(ANY_OBJECT, "the call")}),
            "delete": _admin("delete a call and its recording",
                             {"204": {"description": "deleted"}}, errors=(409, 429)),
        },
        "/admin/api/calls/{id}/recording": {
            "parameters": [_path()],
            "get": _admin("a track of the call's recording",
                          {"200": _binary("audio/ogg", "Ogg/Opus")}, parameters=[TRACK],
                          errors=(422,)),
        },
        "/admin/api/calls/{id}/turns/{turn_id}/audio": {
            "parameters": [_path(), _path("turn_id")],
            "get": _admin("a turn cut from a track", {"200": WAV}, parameters=[TRACK],
                          errors=(422,)),
        },
        "/admin/api/calls/{id}/export": {
            "parameters": [_path()],
            "get": _admin("the stored call as a JSON attachment",
                          {"200": _json(ANY_OBJECT, "the call")}),
        },
        "/admin/api/search": {"get": _admin(
            "turns whose text holds every word of q", {"200": _json(ANY_OBJECT, "turns")},
            parameters=[{"name": "q", "in": "query", "required": True,
                         "schema": {"type": "string", "minLength": 1, "maxLength": 200}},
                        PAGE[0]])},
        "/admin/api/stats": {"get": _admin("counts and latency percentiles", {
            "200": _json(ANY_OBJECT, "stats")})},
    }
    if metrics:
        paths["/metrics"] = {"get": _op("Prometheus metrics", {
            "200": _binary("text/plain", "the text exposition")})}
    return paths


def document(*, metrics: bool = True, admin_token: bool = True,
             metrics_token: bool = False) -> Json:
    """The OpenAPI 3.1 document; `metrics`: whether /metrics is served; `admin_token`,
    `metrics_token`: whether those routes want a bearer token."""
    doc: Json = {
        "openapi": "3.1.0",
        "info": {"title": "avatar_rtc", "version": "1",
                 "description": "A real-time voice agent server. Prose reference: "
                                "docs/api.md; the call's data channel: docs/protocol.md."},
        "paths": _paths(metrics),
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    for path, item in doc["paths"].items():
        if (admin_token and path.startswith("/admin/api/")) or (
                metrics_token and path == "/metrics"):
            for method, operation in item.items():
                if method != "parameters":
                    operation["security"] = [{"bearer": []}]
    return doc


OPENAPI = web.AppKey("openapi", dict)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
