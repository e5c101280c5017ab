"""Swagger UI's files, from the flask-swagger-ui wheel (served at /docs: no CDN, works offline)."""
from __future__ import annotations

from importlib.resources import files

DIST = files("flask_swagger_ui") / "dist"
# The files the /docs page loads, with their media types.
ASSETS = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>modelbus API</title>
  <link rel="stylesheet" type="text/css" href="{root}/docs/index.css">
  <link rel="stylesheet" type="text/css" href="{root}/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="{root}/docs/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="{root}/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{root}/docs/swagger-ui-bundle.js"></script>
  <script src="{root}/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle({{
        url: "{root}/openapi.json",
        dom_id: "#swagger-ui",
        deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout"
      }});
    }};
  </script>
</body>
</html>
"""


def read(name: str) -> bytes:
    """The bytes of one of ASSETS."""
    return (DIST / name).read_bytes()
