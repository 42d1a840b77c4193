"""Operations: liveness (``/healthz``) and Prometheus metrics (``/metrics``, not documented
in the OpenAPI text)."""

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from otaguard import __version__
from otaguard.server.state import Metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def prometheus(metrics: Metrics) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """Liveness: answered on the event loop itself (no thread-pool hop), so its latency is
    the loop's (docs/BENCHMARKS.md, "/healthz under a hostile load")."""
    return {"status": "ok", "version": __version__}
