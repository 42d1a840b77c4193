"""Releases: the targets makers published, as the management API lists them."""

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as FastApiPath

from otaguard.server import schemas
from otaguard.server.routes.params import ERROR_RESPONSES, Operator
from otaguard.server.state import Ctx

router = APIRouter(prefix="/api/v1", tags=["management"], responses=ERROR_RESPONSES)


@router.get("/releases", response_model=list[schemas.ReleaseOut])
def releases(_user: Operator, ctx: Ctx) -> list[schemas.ReleaseOut]:
    return [schemas.ReleaseOut(**r.__dict__) for r in ctx.store.list_releases()]


@router.get("/releases/{target_name:path}", response_model=schemas.ReleaseOut)
def release(
    target_name: Annotated[str, FastApiPath(max_length=255)], _user: Operator, ctx: Ctx
) -> schemas.ReleaseOut:
    return schemas.ReleaseOut(**ctx.store.get_release(target_name).__dict__)
