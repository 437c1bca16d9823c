"""Answers are Flask's JSON byte for byte, with the encoder built once."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from webhook.web.json_provider import OneEncoderJSONProvider

VALUES = [
    {"zeta": 1, "alpha": [1.5, None, True], "nested": {"b": "é", "a": "\u2603"}},
    {"when": datetime.datetime(2026, 11, 27, 19, 0, tzinfo=datetime.UTC)},
    {"id": uuid.UUID(int=7), "amount": decimal.Decimal("1.10"), "day": datetime.date(2026, 1, 2)},
    [3, 2, 1],
    "text",
    None,
]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("value", VALUES)
def test_an_answer_is_what_flask_would_send(value, debug):
    app = Flask(__name__)
    app.debug = debug
    flask_own, ours = DefaultJSONProvider(app), OneEncoderJSONProvider(app)
    with app.app_context():
        expected, answered = flask_own.response(value), ours.response(value)
        again = ours.response(value)  # the kept encoder, a second time
    assert answered.get_data() == expected.get_data() == again.get_data()
    assert answered.mimetype == expected.mimetype == "application/json"


def test_the_app_answers_through_one_encoder(make_app):
    assert isinstance(make_app().json, OneEncoderJSONProvider)
