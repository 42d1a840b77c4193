"""Parameters and documented error answers that several route modules share."""

from typing import Annotated, Any

from fastapi import Depends
from fastapi import Path as FastApiPath

from otaguard.server import auth, schemas

#: the error answers every API route documents (``{"error": code, "detail": text}``)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorOut} for status in (400, 401, 403, 404, 409, 413, 422, 429)
}

#: the authenticated, authorized operator's name
Operator = Annotated[str, Depends(auth.operator)]
#: the authenticated device's id
DeviceId = Annotated[str, Depends(auth.device)]

DeploymentIdPath = Annotated[int, FastApiPath(ge=1, le=schemas.MAX_INT)]
DeviceIdPath = Annotated[str, FastApiPath(pattern=schemas.DEVICE_ID)]
