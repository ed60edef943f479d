"""/docs: Swagger UI from the package's own copy (the swagger-ui-bundle wheel), under a
strict Content-Security-Policy. No CDN, no inline script: the page loads the bundle and a
static start-up script from this app, and works offline.

The bundled Swagger UI (4.x) reads OpenAPI 3.0 only, so the page is fed a 3.0 rendition of
the app's OpenAPI 3.1 document; /openapi.json itself stays as it is, and the page links it."""

from __future__ import annotations

import copy
import html
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from authgate.errors import NotFound
from authgate.server.routing import PrefixRouter

OPENAPI_PATH: Final = "/openapi.json"
DOCS_PATH: Final = "/docs"
ASSETS_PATH: Final = "/docs/assets"
SWAGGER_DOCUMENT_PATH: Final = "/docs/openapi-3.0.json"

# Every script, style, image and request of the page comes from this app; nothing inline
# runs, and the page cannot be framed. Swagger UI's icons are data: images in its CSS.
DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Assets are static for a given installed version: cache them, but never across a
# version change of the package (the URL does not name it).
_ASSET_CACHE: Final = "public, max-age=3600"

# The start-up script: it reads the document's URL from the page, so it holds no data.
INIT_JS: Final = """\
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis]
  });
})();
"""

# name -> media type: the only files served from the bundle.
SWAGGER_UI_DIR: Final = Path(swagger_ui_path)
_BUNDLED: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

router = PrefixRouter(include_in_schema=False)


def _headers(*, cache: str) -> dict[str, str]:
    return {"Content-Security-Policy": DOCS_CSP, "Cache-Control": cache}


def _page(root: str) -> str:
    root = html.escape(root, quote=True)
    assets = f"{root}{ASSETS_PATH}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>authgate - API documentation</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<p><a href="{root}{OPENAPI_PATH}">The OpenAPI 3.1 document</a></p>
<div id="swagger-ui" data-openapi-url="{root}{SWAGGER_DOCUMENT_PATH}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/init.js"></script>
</body>
</html>
"""


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    """The interactive API documentation."""
    # root_path is the operator's deployment prefix (uvicorn --root-path), never a header.
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return HTMLResponse(_page(root), headers=_headers(cache="no-cache"))


def _nullable(node: dict[str, Any], schema: dict[str, Any]) -> None:
    """Put ``schema`` (one that a 3.1 ``anyOf`` paired with null) into ``node``, nullable."""
    if "$ref" in schema:  # 3.0 ignores the siblings of a $ref: wrap it
        node["allOf"] = [schema]
    else:
        node.update(schema)
    node["nullable"] = True


def openapi_30(node: Any) -> Any:
    """An OpenAPI 3.1 document (or part of one) in the 3.0 dialect: ``anyOf`` with null
    becomes ``nullable``, ``const`` a one-value ``enum``, numeric ``exclusiveMinimum`` and
    ``exclusiveMaximum`` the 3.0 boolean forms. Returns a new value."""
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "anyOf" and isinstance(value, list) and {"type": "null"} in value:
            others = [openapi_30(v) for v in value if v != {"type": "null"}]
            if len(others) == 1:
                _nullable(out, others[0])
            else:
                out["anyOf"] = others
                out["nullable"] = True
        elif key == "const":
            out["enum"] = [copy.deepcopy(value)]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = openapi_30(value)
    if out.get("openapi", "").startswith("3.1"):
        out["openapi"] = "3.0.3"
    return out


@router.get(SWAGGER_DOCUMENT_PATH)
async def swagger_document(request: Request) -> JSONResponse:
    """The OpenAPI document in the 3.0 dialect, for the bundled Swagger UI."""
    document = openapi_30(request.app.openapi())
    return JSONResponse(document, headers=_headers(cache="no-cache"))


@router.get(f"{ASSETS_PATH}/init.js")
async def init_js() -> Response:
    """Swagger UI's start-up script."""
    return Response(
        INIT_JS, media_type="text/javascript; charset=utf-8", headers=_headers(cache=_ASSET_CACHE)
    )


@router.get(ASSETS_PATH + "/{name}")
async def bundled_asset(name: str) -> FileResponse:
    """One file of the bundled Swagger UI."""
    media = _BUNDLED.get(name)
    if media is None:
        raise NotFound("no such documentation asset")
    return FileResponse(
        SWAGGER_UI_DIR / name, media_type=media, headers=_headers(cache=_ASSET_CACHE)
    )
