"""The interactive API documentation (``/docs``), served from this server alone.

FastAPI's default page loads Swagger UI from a CDN, which fails on an air-gapped network and
lets a third party run script on an operator's page. The assets come instead from the
``swagger-ui-bundle`` package (PyPI, pinned in pyproject.toml) and are served only if their
sha256 equals the one pinned here, so an altered install serves nothing rather than
something else.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from otaguard.errors import NotFoundError

router = APIRouter(include_in_schema=False)

ASSET_PREFIX = "/docs/assets/"
#: the files the page needs, by name, with the sha256 of swagger-ui-bundle 1.1.0 (Swagger UI 4.15.5)
PINNED_ASSETS = {
    "swagger-ui-bundle.js": (
        "application/javascript",
        "fd76294e33356ab3fd111ddaeeb10d3f79de8ae1a4d34dbf777f5eef224648d9",
    ),
    "swagger-ui.css": (
        "text/css",
        "e883f234c6ef0b7dbb6d473fb45a00b85e98d58282f9dd1cc70bcc57ef12ef6a",
    ),
}


def _asset_dir() -> Path:
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))


@cache
def asset(name: str) -> tuple[str, bytes]:
    """The pinned asset ``name`` as (media type, bytes).

    Raises:
        NotFoundError: ``name`` is not a pinned asset, is missing, or its sha256 differs from
            the pinned one.
    """
    if name not in PINNED_ASSETS:
        raise NotFoundError(f"no documentation asset {name!r}")
    media_type, digest = PINNED_ASSETS[name]
    try:
        data = (_asset_dir() / name).read_bytes()
    except (ImportError, OSError) as exc:
        raise NotFoundError(f"documentation asset {name!r} is not installed") from exc
    if hashlib.sha256(data).hexdigest() != digest:
        raise NotFoundError(f"documentation asset {name!r} does not match its pinned sha256")
    return media_type, data


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="OTAGuard API",
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_js_url=ASSET_PREFIX + "swagger-ui-bundle.js",
        swagger_css_url=ASSET_PREFIX + "swagger-ui.css",
        swagger_favicon_url="data:,",
    )


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/docs/assets/{name}")
def swagger_asset(name: str) -> Response:
    media_type, data = asset(name)
    return Response(data, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
