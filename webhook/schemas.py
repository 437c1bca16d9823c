"""What each hook accepts, as marshmallow schemas."""

from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, fields
from marshmallow.validate import Equal, Length, OneOf, Range

FIRING_OR_RESOLVED = OneOf(["firing", "resolved"])


class CronPingSchema(Schema):
    """A cron ping: an empty body is fine; a cron service may add its own keys."""

    class Meta:
        unknown = EXCLUDE

    source = fields.String(validate=Length(max=200))


class WatchdogAlertSchema(Schema):
    """Our disk watchdog's alert. Unknown keys are refused so a typo is caught, not ignored."""

    class Meta:
        unknown = RAISE

    host = fields.String(required=True, validate=Length(min=1, max=253))
    mount = fields.String(load_default="/", validate=Length(min=1, max=4096))
    used_percent = fields.Float(required=True, validate=Range(min=0, max=100))
    status = fields.String(load_default="firing", validate=FIRING_OR_RESOLVED)
    threshold_percent = fields.Float(validate=Range(min=0, max=100))
    free_bytes = fields.Integer(strict=True, validate=Range(min=0))
    message = fields.String(validate=Length(max=2000))
    timestamp = fields.AwareDateTime()


class AlertmanagerAlertSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    status = fields.String(required=True, validate=FIRING_OR_RESOLVED)
    labels = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    annotations = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    starts_at = fields.String(data_key="startsAt")
    # a firing alert carries endsAt "0001-01-01T00:00:00Z"; it is kept as text, never needed
    ends_at = fields.String(data_key="endsAt")
    generator_url = fields.String(data_key="generatorURL")
    fingerprint = fields.String()


class AlertmanagerWebhookSchema(Schema):
    """Alertmanager's webhook payload, version 4. Newer Alertmanagers add keys: kept out."""

    class Meta:
        unknown = EXCLUDE

    version = fields.String(required=True, validate=Equal("4"))
    group_key = fields.String(data_key="groupKey", required=True)
    truncated_alerts = fields.Integer(data_key="truncatedAlerts", load_default=0)
    status = fields.String(required=True, validate=FIRING_OR_RESOLVED)
    receiver = fields.String(required=True)
    group_labels = fields.Dict(data_key="groupLabels", load_default=dict)
    common_labels = fields.Dict(data_key="commonLabels", load_default=dict)
    common_annotations = fields.Dict(data_key="commonAnnotations", load_default=dict)
    external_url = fields.String(data_key="externalURL")
    alerts = fields.List(fields.Nested(AlertmanagerAlertSchema), required=True)


class TriggerAnswerSchema(Schema):
    """What every hook answers when the request itself was good."""

    decision = fields.String(
        required=True,
        validate=OneOf(
            ["started", "skipped", "busy", "disabled", "no_target", "ignored", "duplicate"]
        ),
    )
    reason = fields.String(required=True)
    trigger = fields.String()
    target = fields.String(allow_none=True)
    run_id = fields.Integer(allow_none=True)
    next_eligible_ts = fields.Float(allow_none=True)
    request_id = fields.String()
    run = fields.Dict(metadata={"description": "the finished run, with ?wait=1"})


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
