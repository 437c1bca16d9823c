"""The kept encoder writes what the standard library's would, for any JSON value."""

from __future__ import annotations

import datetime
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from webhook.json_text import encoder

# JSON turns these keys into strings; mixed, they cannot be sorted
KEYS = st.text() | st.integers() | st.floats() | st.booleans() | st.none()
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities too, as Python's json writes them
    | st.text()
    | st.datetimes(),  # through `default`
    lambda children: st.lists(children) | st.dictionaries(KEYS, children),
    max_leaves=30,
)


@example(
    value=[float("nan"), float("-inf")], ensure_ascii=True, sort_keys=False, separators=(", ", ": ")
)
@example(value={"b": "é", "a": "☃"}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
@given(
    value=JSON_VALUES,
    ensure_ascii=st.booleans(),
    sort_keys=st.booleans(),
    separators=st.sampled_from([(", ", ": "), (",", ":")]),
)
def test_any_value_is_written_as_the_standard_encoder_writes_it(
    value, ensure_ascii, sort_keys, separators
):
    settings = {"ensure_ascii": ensure_ascii, "sort_keys": sort_keys, "separators": separators}
    assert written(encoder(default=str, **settings), value) == written(
        json.JSONEncoder(default=str, **settings).encode, value
    )


def written(encode, value) -> str | type[Exception]:
    """The text, or the kind of error (keys that cannot be sorted) both must raise alike."""
    try:
        return encode(value)
    except TypeError:
        return TypeError


def test_an_object_the_default_cannot_turn_into_json_is_refused_as_by_the_standard():
    def refuse(value: object) -> object:
        raise TypeError(f"not JSON: {value!r}")

    with pytest.raises(TypeError, match="not JSON"):
        encoder(default=refuse)({"when": datetime.date(2026, 1, 1)})


def test_without_the_c_accelerator_the_standard_encoder_itself_writes(monkeypatch):
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    value = {"b": [1.5, None, float("inf")], "a": "é"}
    encode = encoder(default=str, sort_keys=True, separators=(",", ":"))
    assert encode(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))
