"""GET /metrics: the counters and the state's gauges (webhook.metrics), for readers."""

from __future__ import annotations

from flask import Blueprint, Response

from webhook.web.auth import guard_reading
from webhook.web.context import prunehook

bp = Blueprint("metrics", __name__)
guard_reading(bp)


@bp.get("/metrics")
def metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(prunehook().metrics.render(), content_type=CONTENT_TYPE_LATEST)
