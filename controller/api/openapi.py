"""The OpenAPI document, made from the application's route table, and a page that lists it.

Walking `request.app.routes` at request time means a route cannot exist without being in the
document: `ApiRoute`s bring their `Doc`; any other route (the webhooks) its endpoint's docstring.
"""

from __future__ import annotations

import html
import re
from typing import Any, Iterable, Iterator, Sequence

from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from controller.api.routing import ApiRoute, Call, Doc, reply
from controller.services import Services

PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?}")
PUBLIC_PREFIXES = ("/api/v1/hooks/",)


def operations(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, Route]]:
    """(OpenAPI path, method, route) for every HTTP operation, HEAD left out."""
    for route in routes:
        if isinstance(route, Mount):
            yield from operations(route.routes, prefix + route.path)
        elif isinstance(route, Route) and route.include_in_schema:
            path = PARAM.sub(r"{\1}", prefix + route.path)
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield path, method, route


def _operation(path: str, method: str, route: Route) -> dict[str, Any]:
    if isinstance(route, ApiRoute):
        doc, public = route.doc, route.public
    else:
        text = (route.endpoint.__doc__ or route.name or "").strip()
        doc, public = Doc(text.splitlines()[0] if text else path, tag="hooks"), path.startswith(PUBLIC_PREFIXES)
    op: dict[str, Any] = {"operationId": f"{route.name}_{method.lower()}", "summary": doc.summary, "tags": [doc.tag],
                          "responses": {str(code): {"description": text} for code, text in doc.responses.items()}}
    if doc.description:
        op["description"] = doc.description
    params: list[dict[str, Any]] = []
    for name, convertor in PARAM.findall(route.path):
        schema = {"type": "integer"} if convertor == "int" else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, text in doc.query.items():
        params.append({"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}})
    if params:
        op["parameters"] = params
    if doc.body is not None:
        op["requestBody"] = {"required": True, "content": {doc.media: {"schema": dict(doc.body)}}}
    if public:
        op["security"] = []
    else:
        op["responses"].setdefault("401", {"description": "No API key, or a bad one"})
        op["responses"].setdefault("429", {"description": "More requests than the setting rate_limit allows in a "
                                                          "minute: try again after Retry-After seconds"})
        if method != "GET":
            op["responses"].setdefault("403", {"description": "A read-only API key"})
    return op


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, method, route in operations(routes):
        paths.setdefault(path, {})[method.lower()] = _operation(path, method, route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Clarity controller API", "version": "1"},
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "an API key (clk_...)"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {
                "type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}},
        },
        "security": [{"apiKey": []}],
        "paths": dict(sorted(paths.items())),
    }


def openapi_json(call: Call) -> Response:
    """The OpenAPI document of this API."""
    return reply(document(call.request.app.routes))


def docs_page(call: Call) -> Response:
    """A page listing the API's operations (self-contained: no scripts or styles from elsewhere)."""
    doc = document(call.request.app.routes)
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            auth = "none" if op.get("security") == [] else ("admin key" if method != "get" else "API key")
            params = ", ".join(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
            codes = ", ".join(f"{c} {r['description']}" for c, r in op["responses"].items())
            rows.append(
                f"<tr><td class=m>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}{'<br><small>query: ' + html.escape(params) + '</small>' if params else ''}"
                f"</td><td>{auth}</td><td><small>{html.escape(codes)}</small></td></tr>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clarity API</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.4em .8em;text-align:left;vertical-align:top}}.m{{font-weight:bold}}</style>
</head><body><h1>Clarity controller API</h1>
<p>Send <code>Authorization: Bearer &lt;key&gt;</code>. Errors are
<code>{{"error": {{"code": "...", "message": "..."}}}}</code>. The machine-readable form:
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>
<table><tr><th>method</th><th>path</th><th>what</th><th>auth</th><th>answers</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    return HTMLResponse(page)


def routes(services: Services) -> list[BaseRoute]:
    return [
        ApiRoute("GET", "/api/v1/openapi.json", openapi_json, services, Doc("The OpenAPI document", tag="docs"),
                 public=True),
        ApiRoute("GET", "/api/v1/docs", docs_page, services, Doc("The API's operations, as a page", tag="docs"),
                 public=True),
    ]
