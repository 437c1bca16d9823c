"""AWS Lambda (apig-wsgi): the handler `webhook.platforms.aws_lambda.handler`.

It takes the events of a function URL and of API Gateway's HTTP API (payload 2.0) and REST
API (1.0), base64-encoded bodies included, and answers in the same format.
"""

from __future__ import annotations

from apig_wsgi import make_lambda_handler

from webhook.platforms.cold_start import build_app

app = build_app("AWS Lambda")
# a REST API (payload 1.0) gets a body base64-encoded only when it is no text or JSON
handler = make_lambda_handler(app, binary_support=True)
