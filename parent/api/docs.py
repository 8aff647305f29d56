"""The OpenAPI description and a Swagger UI to read it, both served by the parent.

Public, like /healthz: the document lists routes and shapes, never data or secrets, and a
reader needs it before holding a token. The UI's assets come from the flask-swagger-ui
package (Swagger UI 5, which reads OpenAPI 3.1), so no CDN is involved.
"""

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, current_app, jsonify, send_from_directory

from shared.paths import API_PREFIX

from ..openapi import OBJECT, describe, openapi_document

SWAGGER_UI_DIR = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
OPENAPI_PATH = API_PREFIX + "/openapi.json"
DOCS_PATH = "/api/docs"

# Swagger UI sets inline styles on its elements; scripts stay same-origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>WeRSS Cascade API</title>
  <link rel="stylesheet" href="{DOCS_PATH}/swagger-ui.css">
  <link rel="icon" href="{DOCS_PATH}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{DOCS_PATH}/swagger-ui-bundle.js"></script>
  <script src="{DOCS_PATH}/swagger-ui-standalone-preset.js"></script>
  <script src="{DOCS_PATH}/init.js"></script>
</body>
</html>
"""

_INIT = f"""window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
}});
"""

bp = Blueprint("docs", __name__)


@bp.after_request
def _secure(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get(OPENAPI_PATH)
@describe("This OpenAPI 3.1 document", content={"application/json": OBJECT}, public=True)
def openapi_json():
    return jsonify(openapi_document(current_app))


@bp.get(DOCS_PATH)
@describe("Swagger UI over this document (HTML)", content={"text/html": {"type": "string"}},
          public=True)
def swagger_ui():
    return Response(_PAGE, content_type="text/html; charset=utf-8")


@bp.get(DOCS_PATH + "/init.js")
def swagger_init():
    return Response(_INIT, content_type="text/javascript; charset=utf-8")


@bp.get(DOCS_PATH + "/<path:asset>")
def swagger_asset(asset: str):
    # send_from_directory refuses paths that leave the directory (404 in the envelope).
    return send_from_directory(SWAGGER_UI_DIR, asset)
