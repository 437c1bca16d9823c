"""The baseline: a bare Flask app with one JSON route, served by the same gunicorn config."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.post("/hooks/cron")
def cron():
    return jsonify({"decision": "skipped", "reason": "interval not due yet"})


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})
