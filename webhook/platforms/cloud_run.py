"""Cloud Run functions (functions-framework): the HTTP function `prunehook`.

    functions-framework --target prunehook --source webhook/platforms/cloud_run.py

or deployed with `gcloud functions deploy ... --entry-point prunehook` from a `main.py` that
imports it (docs/functions.md). functions-framework routes every path to the function; the
function hands the request to prunehook's own app, with its routes, errors and limits.
"""

from __future__ import annotations

import flask
from werkzeug.wrappers import Response

from webhook.platforms.cold_start import build_app

app = build_app("Cloud Run functions")


def prunehook(request: flask.Request) -> Response:
    # buffered: the answer is complete when the function returns, as the framework expects
    # of a response it did not see streamed
    return Response.from_app(app.wsgi_app, request.environ, buffered=True)
