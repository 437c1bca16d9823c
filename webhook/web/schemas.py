"""What each hook accepts, as marshmallow schemas."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from marshmallow import (
    EXCLUDE,
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
)
from marshmallow.validate import Equal, Length, OneOf, Range, Regexp

from webhook.core.decision import Answer, Result
from webhook.core.forecast import Forecast
from webhook.core.outcome import ErrorKind, Step
from webhook.core.sizes import BIGINT_MAX
from webhook.core.targets import NAME_PATTERN
from webhook.store import RunRecord

if TYPE_CHECKING:
    from webhook.service import TargetResult

FIRING_OR_RESOLVED = OneOf(["firing", "resolved"])
AN_ANSWER = OneOf([answer.value for answer in Answer])
AN_ERROR_KIND = OneOf([kind.value for kind in ErrorKind])
A_RESULT = OneOf([result.value for result in Result])


class JSONNumber(fields.Float):
    """A JSON number: marshmallow's Float also takes "91", which the document calls invalid."""

    def _validated(self, value: Any) -> float:
        if isinstance(value, str):
            raise self.make_error("invalid")
        return super()._validated(value)


class Printable(Regexp):
    """No control character (NUL, escapes, DEL, C1) nor lone surrogate; prose may keep tabs
    and line breaks.

    A text prunehook keeps or logs (a trigger's source, host, receiver, label) is shown to
    operators: a NUL fails PostgreSQL's write, an escape rewrites a terminal, a lone
    surrogate (JSON's "\\ud800") is no UTF-8 text a database or a log line can hold, and no
    real sender puts any of them in a name. A pattern, so the OpenAPI document states it too;
    its bound (`least` to `most`) is in it so that fuzzers generate within it instead of
    filtering, but the length is Length's to refuse: a value gets only the errors true of it."""

    def __init__(self, most: int, least: int = 0, prose: bool = False) -> None:
        control = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f" if prose else r"\x00-\x1f\x7f-\x9f"
        # the document's pattern leaves surrogates out: JSON Schema's regexes (and fuzzers)
        # cannot say them
        self.control = re.compile(rf"[{control}\ud800-\udfff]")
        pattern = rf"^[^{control}]{{{least},{most}}}$"
        super().__init__(pattern, error="must not contain control characters or lone surrogates")

    def __call__(self, value: str | bytes) -> str | bytes:  # type: ignore[override]
        if self.control.search(value) is not None:  # type: ignore[arg-type]
            raise ValidationError(self._format_error(value))
        return value


# Every text a hook accepts is bounded, as some are logged and stored (the receiver is the
# run's trigger): well above what a real sender sends, so an over-long value is a broken or
# hostile sender and is refused (422) rather than cut into something it never sent.
NAME_CHARS = 256  # a receiver's or a label's name
LABEL_VALUE_CHARS = 4096
ANNOTATION_CHARS = 64 * 1024  # free prose: descriptions, runbooks
URL_CHARS = 8192  # a generatorURL carries the alert's PromQL expression
GROUP_KEY_CHARS = 8192  # the route's matchers and the group's labels
FINGERPRINT_CHARS = 64
TIME_CHARS = 64


def _text(max_chars: int, **kwargs) -> fields.String:
    """A text that is only bounded: prunehook neither keeps nor logs it."""
    return fields.String(validate=Length(max=max_chars), **kwargs)


def _kept(max_chars: int, min_chars: int = 0, prose: bool = False, **kwargs) -> fields.String:
    """A text prunehook keeps or logs: bounded, and printable."""
    length = Length(min=min_chars or None, max=max_chars)
    return fields.String(validate=[length, Printable(max_chars, min_chars, prose)], **kwargs)


def _string_map(max_value_chars: int, kept: bool = False, **kwargs) -> fields.Dict:
    """Alertmanager's label and annotation sets: names to strings, both bounded. An alert's
    own labels are `kept` (its host and name reach the run's record); a value may span
    lines. A name is only looked up, and OpenAPI 3.0 cannot state a pattern for it."""
    return fields.Dict(
        keys=fields.String(validate=Length(max=NAME_CHARS)),
        values=_kept(max_value_chars, prose=True) if kept else _text(max_value_chars),
        load_default=dict,
        **kwargs,
    )


class CronPingSchema(Schema):
    """A cron ping: an empty body is fine; a cron service may add its own keys."""

    class Meta:
        unknown = EXCLUDE

    source = _kept(200)


class WatchdogAlertSchema(Schema):
    """Our disk watchdog's alert. Unknown keys are refused so a typo is caught, not ignored."""

    class Meta:
        unknown = RAISE

    host = _kept(253, min_chars=1, required=True)
    mount = _kept(4096, min_chars=1, load_default="/")
    used_percent = JSONNumber(required=True, validate=Range(min=0, max=100))
    status = fields.String(load_default="firing", validate=FIRING_OR_RESOLVED)
    threshold_percent = JSONNumber(validate=Range(min=0, max=100))
    free_bytes = fields.Integer(strict=True, validate=Range(min=0))
    message = _text(2000)
    timestamp = fields.AwareDateTime()


class AlertmanagerAlertSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    status = fields.String(required=True, validate=FIRING_OR_RESOLVED)
    labels = _string_map(LABEL_VALUE_CHARS, kept=True)
    annotations = _string_map(ANNOTATION_CHARS)
    starts_at = _text(TIME_CHARS, data_key="startsAt")
    # a firing alert carries endsAt "0001-01-01T00:00:00Z"; it is kept as text, never needed
    ends_at = _text(TIME_CHARS, data_key="endsAt")
    generator_url = _text(URL_CHARS, data_key="generatorURL")
    fingerprint = _text(FINGERPRINT_CHARS)


# a real alert is about 1 KB: one per KiB of the largest body (16 MiB) is more than any group
MAX_ALERTS = 16 * 1024


class AlertmanagerWebhookSchema(Schema):
    """Alertmanager's webhook payload, version 4. Newer Alertmanagers add keys: kept out."""

    class Meta:
        unknown = EXCLUDE

    version = fields.String(required=True, validate=Equal("4"))
    group_key = _text(GROUP_KEY_CHARS, data_key="groupKey", required=True)
    truncated_alerts = fields.Integer(
        data_key="truncatedAlerts", load_default=0, strict=True, validate=Range(min=0)
    )
    status = fields.String(required=True, validate=FIRING_OR_RESOLVED)
    receiver = _kept(NAME_CHARS, min_chars=1, required=True)
    group_labels = _string_map(LABEL_VALUE_CHARS, data_key="groupLabels")
    common_labels = _string_map(LABEL_VALUE_CHARS, data_key="commonLabels")
    common_annotations = _string_map(ANNOTATION_CHARS, data_key="commonAnnotations")
    external_url = _text(URL_CHARS, data_key="externalURL")
    alerts = fields.List(
        fields.Nested(AlertmanagerAlertSchema),
        required=True,
        metadata={"description": f"at most {MAX_ALERTS} (more is a 422)"},
    )

    @pre_load
    def _count_alerts_first(self, data: Any, **_: Any) -> Any:
        """Refuse too many alerts before reading any: each would make an error of its own,
        and millions of tiny ones fit in a body."""
        alerts = data.get("alerts") if isinstance(data, dict) else None
        if isinstance(alerts, list) and len(alerts) > MAX_ALERTS:
            raise ValidationError(f"Longer than maximum length {MAX_ALERTS}.", "alerts")
        return data


# ?wait= as hooks.py reads it; absent means 0
WAIT_FLAGS = {"0": False, "1": True, "true": True, "false": False}


class HookQuerySchema(Schema):
    """What every hook's query may carry."""

    wait = fields.String(
        validate=OneOf(list(WAIT_FLAGS)),
        metadata={
            "description": "1 or true: wait for the prune's result instead of answering at"
            " once; absent means 0"
        },
    )


def cron_query(names: tuple[str, ...]) -> type[Schema]:
    """/hooks/cron's query: `?target=` names this instance's targets, so the document
    lists them."""
    name = fields.String(validate=[Regexp(NAME_PATTERN), *([OneOf(names)] if names else [])])
    why = "only these targets (repeatable); default: every target. A name that is no target"
    target = fields.List(name, metadata={"description": why + " is a 422"})
    return HookQuerySchema.from_dict({"target": target}, name="CronQuerySchema")


class TargetPathSchema(Schema):
    name = fields.String(required=True)


class RunPathSchema(TargetPathSchema):
    run_id = fields.Integer(required=True, validate=Range(min=0, max=BIGINT_MAX))


# how a stored record's field is shown, by its type; `| None`: it may be null
SHOWN_AS: dict[str, Callable[..., fields.Field]] = {
    "int": fields.Integer,
    "float": fields.Float,
    "str": fields.String,
    "bool": fields.Boolean,
    "Result": partial(fields.String, validate=A_RESULT),
    "ErrorKind": partial(fields.String, validate=AN_ERROR_KIND),
    "tuple[str, ...]": partial(fields.List, fields.String()),
}
# what a step's or a run's fields mean, where the name does not say it all
ABOUT = {
    "name": {"example": "stage 2"},
    "reclaimed": {"example": "1.5GB"},
    "notes": {"description": "probes that failed, stages not run and why"},
    "freed_bytes": {"description": "free bytes after less before, from df"},
    "cache_before": {"description": "the build cache as docker system df says"},
    "goal_met": {"description": "max_cache and min_free after the last stage; null: no goal"},
    "needed": {
        "description": "false: a critical start whose first measure found no prune needed;"
        " it pruned nothing"
    },
    "free_short_bytes": {"description": "how far free space is under min_free"},
    "cache_over_bytes": {"description": "how far the cache is over max_cache"},
    "keep_storage_bytes": {"description": "stage 2's --keep-storage, when it ran"},
    "forecast": {"description": "a run started ahead of a forecast: the forecast"},
    "fill_rate_bytes_per_s": {"description": "free space falls this fast (negative: rises)"},
    "min_free_at": {"description": "when free space crosses min_free (0 without one)"},
    "full_at": {"description": "when free space reaches 0"},
    "max_cache_at": {"description": "when the build cache reaches max_cache"},
    "samples": {"description": "samples on the line (the window, since the last prune)"},
}


def _shown(record: type, leave_out: tuple[str, ...]) -> dict[str, fields.Field]:
    """A record's fields (a Step's, a RunRecord's) as answers show them, but `leave_out`."""
    shown = {}
    for each in dataclasses.fields(record):
        kind = str(each.type).removesuffix(" | None")
        if each.name not in leave_out:
            nullable = {"allow_none": True} if kind != each.type else {"required": True}
            shown[each.name] = SHOWN_AS[kind](**nullable, metadata=ABOUT.get(each.name, {}))
    return shown


class ForecastSchema(Schema):
    """When a target's disk fills, from the line through its recent samples (DESIGN.md,
    "Watching and forecasting"); `why_none` says why there is no line."""

    class Meta:
        include = _shown(Forecast, ())


SHOWN_AS["Forecast"] = partial(fields.Nested, ForecastSchema)
FORECAST = ForecastSchema()


class StepSchema(Schema):
    """One command of a run: a probe (disk, cache, versions) or a stage."""

    class Meta:
        include = _shown(Step, ("stdout_tail", "stderr_tail"))


class StepWithTailsSchema(StepSchema):
    stdout_tail = fields.String(required=True)
    stderr_tail = fields.String(required=True)


class RunSchema(Schema):
    """One run as every answer shows it: /status's recent runs and a ?wait=1 answer alike.
    The output tails stay in the database: 32 KiB a run is too much for an answer."""

    class Meta:
        # the output tails and steps' are GET .../runs/{id}'s (RunWithTailsSchema)
        include = _shown(RunRecord, ("target", "steps", "stdout_tail", "stderr_tail"))

    steps = fields.List(
        fields.Nested(StepSchema),
        metadata={"description": "each probe and stage, in order (GET .../runs/{id}: tails)"},
    )


class RunWithTailsSchema(RunSchema):
    """One run with every step's output tail: GET /status/{name}/runs/{id}."""

    steps = fields.List(fields.Nested(StepWithTailsSchema))
    stdout_tail = fields.String(allow_none=True)
    stderr_tail = fields.String(allow_none=True)


RUN = RunSchema()  # a stored run as answers show it
RUN_WITH_TAILS = RunWithTailsSchema()  # and with its output tails, each step's too


class _DecidedSchema(Schema):
    target = fields.String(
        allow_none=True, metadata={"description": "null for a host that is no target"}
    )
    decision = fields.String(required=True, validate=AN_ANSWER, attribute="answer")
    reason = fields.String(required=True)
    run_id = fields.Integer(allow_none=True)
    next_eligible_ts = fields.Float(allow_none=True)


class TargetAnswerSchema(_DecidedSchema):
    """What a trigger decided for one target it concerns: a TargetResult as the hooks and the
    CLI show it (`answer_of`)."""

    run = fields.Nested(RunSchema, metadata={"description": "the finished run, with ?wait=1"})


_DECIDED, _TARGET_ANSWER = _DecidedSchema(), TargetAnswerSchema()


def answer_of(result: TargetResult) -> dict[str, Any]:
    """A TargetResult as answers show it: with `run` once it finished."""
    return (_DECIDED if result.run is None else _TARGET_ANSWER).dump(result)


class TriggerAnswerSchema(TargetAnswerSchema):
    """What every hook answers when the request itself was good: the keys of the target
    that started (else the first), and `results`, one item per concerned target."""

    decision = fields.String(
        required=True,
        validate=AN_ANSWER,
        metadata={"description": "started when any target started, else the first item's"},
    )
    trigger = fields.String()
    request_id = fields.String()
    results = fields.List(fields.Nested(TargetAnswerSchema), required=True)


class InFlightSchema(Schema):
    run_id = fields.Integer(required=True)
    started_ts = fields.Float(allow_none=True)
    lease_expires_ts = fields.Float(allow_none=True)
    lease_expired = fields.Boolean(required=True)
    worker_pid = fields.Integer(allow_none=True)


class TargetStatusSchema(Schema):
    """One target in GET /status's `targets`, and GET /status/{name} (with `recent_runs`)."""

    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True, metadata={"description": "the target's stable name"})
    host = fields.String(required=True, metadata={"description": "user@address:port"})
    enabled = fields.Boolean(required=True)
    command = fields.String(required=True)
    interval_s = fields.Float(required=True)
    until = fields.String(required=True)
    all = fields.Boolean(required=True)
    last_run_ts = fields.Float(required=True, allow_none=True)
    interval_from_ts = fields.Float(
        allow_none=True,
        metadata={
            "description": "the start the interval counts from: last_run_ts, unless that was"
            " a critical start its own measure did not bear out"
        },
    )
    last_finished_ts = fields.Float(allow_none=True)
    last_result = fields.String(allow_none=True, validate=A_RESULT)
    last_reclaimed = fields.String(required=True, allow_none=True)
    last_reclaimed_bytes = fields.Integer(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    last_error_kind = fields.String(allow_none=True, validate=AN_ERROR_KIND)
    last_success_ts = fields.Float(allow_none=True)
    in_flight = fields.Nested(InFlightSchema, required=True, allow_none=True)
    next_eligible_ts = fields.Float(required=True, allow_none=True)
    eligible_now = fields.Boolean(required=True)
    recent_runs = fields.List(fields.Nested(RunSchema))
    max_cache = fields.Integer(allow_none=True, metadata={"description": "bytes; null: none"})
    min_free = fields.String(allow_none=True, metadata={"example": "15%"})
    critical_percent = fields.Float()
    critical_interval_s = fields.Float()
    docker_root = fields.String()
    disk_size_bytes = fields.Integer(
        allow_none=True, metadata={"description": "the last measurement (df), any run's"}
    )
    disk_free_bytes = fields.Integer(allow_none=True)
    build_cache_bytes = fields.Integer(allow_none=True)
    measured_ts = fields.Float(allow_none=True)
    last_freed_bytes = fields.Integer(allow_none=True)
    last_goal_met = fields.Boolean(allow_none=True)
    last_free_short_bytes = fields.Integer(allow_none=True)
    forecast = fields.Nested(
        ForecastSchema,
        required=True,
        allow_none=True,
        metadata={"description": "the line through the samples since the last prune; null:"
                  " never measured (watch_interval_s 0 and no run yet)"},
    )  # fmt: skip


class OneTargetStatusSchema(TargetStatusSchema):
    """GET /status/{name}: the target with its recent runs."""

    target = fields.String(required=True)
    recent_runs = fields.List(fields.Nested(RunSchema), required=True)


class StatusSchema(TargetStatusSchema):
    """GET /status (the keys operators and tools rely on; more may follow). With at most
    one target, that target's keys (the seed's: `last_run_ts`, `last_reclaimed`, ...) and
    its `recent_runs` are at the top level too, `target` naming it: so none of them is
    required (`partial`, below)."""

    class Meta:
        unknown = INCLUDE
        exclude = ("name",)

    now = fields.Float(required=True)
    targets = fields.List(fields.Nested(TargetStatusSchema), required=True)
    warnings = fields.List(fields.String(), required=True)
    target = fields.String(
        allow_none=True, metadata={"description": "the single target's name (one target only)"}
    )
    host = fields.String(allow_none=True, metadata={"description": "user@address:port"})


# the target's keys are at the top level only with at most one target
STATUS = StatusSchema(partial=tuple(TargetStatusSchema().fields.keys() - {"enabled"}))


class ErrorSchema(Schema):
    """Every error, werkzeug's included."""

    error = fields.String(required=True, metadata={"example": "validation_failed"})
    message = fields.String(required=True)
    request_id = fields.String()
    fields_ = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        metadata={"description": "field -> messages, for a 422"},
    )
