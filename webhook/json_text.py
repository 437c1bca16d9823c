"""JSON text exactly as `json.JSONEncoder(...).encode` writes it, its C encoder made once.

`JSONEncoder.encode` makes a new C encoder (and a closure) on every call: a third of the
cost of encoding a short object, paid twice by every skip in an alert storm (its log line
and its answer).
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Sequence
from typing import Any

Encode = Callable[[Any], str]


def encoder(
    *,
    default: Callable[[Any], Any],
    ensure_ascii: bool = True,
    sort_keys: bool = False,
    separators: tuple[str, str] = (", ", ": "),
) -> Encode:
    """`JSONEncoder(default=..., ensure_ascii=..., sort_keys=..., separators=...).encode`,
    without the circular-reference check: nothing encoded here refers to itself (a cycle
    would raise RecursionError instead of ValueError), and the check's bookkeeping, kept
    with the encoder, would not be safe across threads."""
    # the C accelerator's constructor, which typeshed does not declare
    make: Callable[..., Callable[[Any, int], Sequence[str]]] | None = getattr(
        json.encoder, "c_make_encoder", None
    )
    if make is None:  # a Python built without the C accelerator
        return json.JSONEncoder(
            default=default, ensure_ascii=ensure_ascii, sort_keys=sort_keys,
            separators=separators, check_circular=False,
        ).encode  # fmt: skip
    item_separator, key_separator = separators
    strings = (
        json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    )
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
    #  skipkeys, allow_nan), as JSONEncoder.iterencode passes them
    chunks = make(
        None, default, strings, None, key_separator, item_separator, sort_keys, False, True
    )

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode
