"""Flask's JSON answers, byte for byte, with the encoder made once."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response

from webhook.json_text import Encode, encoder


class OneEncoderJSONProvider(DefaultJSONProvider):
    """`jsonify` makes a new encoder for every answer (json.dumps with arguments does), a
    few µs of each skip in an alert storm: this one keeps the compact encoder that answers
    use. Its settings are read once, on the first answer."""

    @cached_property
    def _compact(self) -> Encode:
        return encoder(
            default=self.default,
            ensure_ascii=self.ensure_ascii,
            sort_keys=self.sort_keys,
            separators=(",", ":"),
        )

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)  # indented, for people
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(f"{self._compact(obj)}\n", mimetype=self.mimetype)
