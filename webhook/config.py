"""Settings from the environment (and `.env`), validated once at startup.

Every variable is a marshmallow field, declared once: the per-target keys in
`PolicySchema` (shared with the targets file), the others in `Variables`; each
carries its default, its bound and its meaning (`metadata["description"]`).
Every problem is reported at once. Where the seed has a safe default
(`fallback`: interval, retry delay, timeout, notify threshold, and `until`:
24h, as the seed's TC-08 says) a bad value is replaced with a warning; where
none is safe (a key file that cannot be read, a port that is not a port) the
service refuses to start and names the variable.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from environs import Env
from marshmallow import Schema, ValidationError, fields, missing
from marshmallow.validate import Range, Regexp

from webhook.core.duration import duration_seconds
from webhook.core.signatures import MIN_KEY_BYTES, parse_secrets
from webhook.core.targets import (
    Fleet,
    Number,
    Parsed,
    PolicySchema,
    PrunePolicy,
    SSHEndpoint,
    Target,
    TargetsFileError,
    about,
    make_target,
    name_for_host,
    parse_targets,
    policy_of,
    read_document,
    seconds,
)
from webhook.core.triggers import DEFAULT_HOST_LABELS
from webhook.logs import LogLevel

PREFIX = "PRUNEHOOK_"
# PRUNEHOOK_DATABASE_URL's rule, and `state copy`'s destination's; never echoes the URL,
# which may carry a password
POSTGRES_URL = Regexp("postgres(ql)?://", error="must be a postgresql:// (or postgres://) URL")
# the `.env` every entry point reads: relative, so the working directory's at each read
DOTENV = Path(".env")


class ConfigError(Exception):
    """The configuration cannot be used; `errors` maps each variable to its problems, each
    said on a line of its own that names the variable."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        lines = [
            f"  {name}: {message}"
            for name, messages in sorted(errors.items())
            for message in messages
        ]
        super().__init__("invalid prunehook configuration:\n" + "\n".join(lines))


# gunicorn's worker processes and each one's threads: the variable and its default
SERVER_COUNTS = {"WEB_CONCURRENCY": 2, "GUNICORN_THREADS": 8}


def server_counts(*variables: str) -> tuple[int, ...]:
    """The counts `variables` name (all of SERVER_COUNTS by default), read from the process
    environment only; raises ConfigError naming each that is not a whole number, 1 or more.
    The gunicorn settings file reads them here, `prunehook serve` checks them here before
    gunicorn reads WEB_CONCURRENCY, and the PostgreSQL pool is sized by the threads."""
    counts: list[int] = []
    errors: dict[str, list[str]] = {}
    for variable in variables or SERVER_COUNTS:
        text = os.environ.get(variable, str(SERVER_COUNTS[variable]))
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            errors[variable] = [f"must be a whole number, 1 or more, not {text!r}"]
        counts.append(count)
    if errors:
        raise ConfigError(errors)
    return tuple(counts)


def _secrets(value: str) -> None:
    try:
        parse_secrets(value)
    except ValueError as error:
        raise ValidationError(str(error)) from error


def _token(value: str) -> None:
    if len(value.encode()) < MIN_KEY_BYTES:
        raise ValidationError(
            f"is {len(value.encode())} bytes; at least {MIN_KEY_BYTES} are needed"
            " (e.g. openssl rand -hex 32)"
        )


def _labels(text: str) -> tuple[str, ...]:
    labels = tuple(label.strip() for label in text.split(",") if label.strip())
    if not labels:
        raise ValidationError("name at least one label, e.g. host,instance")
    return labels


class Variables(Schema):
    """The service's own variables (PolicySchema has the per-target ones), each named as its
    variable lowercased without PRUNEHOOK_."""

    enabled = fields.Boolean(load_default=True, metadata=about("false: triggers run nothing"))
    ssh_host = fields.String(load_default="", metadata=about("the build host; empty: no target"))
    ssh_key = fields.String(load_default="", metadata=about("the key's text, or SSH_KEY_FILE"))
    ssh_known_hosts_text = fields.String(
        load_default="",
        metadata=about(
            "function platforms only (docs/functions.md): known_hosts lines, written at a cold"
            " start to a private file for SSH_KNOWN_HOSTS"
        ),
    )
    ssh_connect_timeout_s = seconds(
        SSHEndpoint.connect_timeout_s, None, "each SSH step before the command runs"
    )
    lease_grace_s = seconds(PrunePolicy.lease_grace_s, None, "a run holds its target this long")
    token = fields.String(
        load_default="",
        validate=_token,
        metadata=about(
            f"bearer token the hooks require, at least {MIN_KEY_BYTES} bytes; empty: one is"
            " generated and kept in the instance folder (hook-token)"
        ),
    )
    status_token = fields.String(
        load_default="",
        validate=_token,
        metadata=about(
            f"token /status, its pages and /metrics require, at least {MIN_KEY_BYTES} bytes;"
            " empty: they are open"
        ),
    )
    hmac_secret = fields.String(
        load_default="",
        validate=_secrets,
        metadata=about(
            "Standard Webhooks secrets, space-separated: whsec_ and the base64 of at least"
            f" {MIN_KEY_BYTES} bytes each"
        ),
    )
    db_path = fields.String(
        load_default="",
        metadata=about("SQLite file; default: prunehook.sqlite3 in the instance folder"),
    )
    database_url = fields.String(
        load_default="",
        validate=POSTGRES_URL,
        metadata=about("PostgreSQL instead (replicas); else the platforms' DATABASE_URL"),
    )
    wait_for_run = fields.Boolean(load_default=False, metadata=about("answer after the run"))
    log_level = fields.Enum(
        LogLevel,
        by_value=True,
        load_default=LogLevel.INFO,
        metadata=about(
            "debug also logs each trigger that is not due or finds a run going (skipped, busy)",
            fallback=True,
        ),
    )
    targets_file = fields.String(load_default="", metadata=about("a TOML file of build hosts"))
    host_labels = Parsed(
        _labels,
        load_default=DEFAULT_HOST_LABELS,
        metadata=about("Alertmanager labels naming an alert's host, first match counts"),
    )
    max_parallel = fields.Integer(
        strict=True,
        load_default=8,
        validate=Range(1, 256),
        metadata=about("prunes running at once in one process"),
    )
    notify_urls = Parsed(
        str.split, load_default=(), metadata=about("apprise URLs, separated by spaces")
    )
    notify_min_gb = Number(
        load_default=0,
        validate=Range(0),
        metadata=about("notify a reclaim of at least this many GB; 0: never", fallback=True),
    )
    notify_failures = fields.Integer(
        strict=True,
        load_default=3,
        # a streak is read from the run history (100 runs a target), two runs more than this at most
        validate=Range(0, 50),
        metadata=about("notify this many failed runs in a row; 0: never", fallback=True),
    )
    telegram_bot_token = fields.String(load_default="", metadata=about("Telegram bot token"))
    telegram_chat_id = fields.String(load_default="", metadata=about("Telegram chat id"))
    telegram_api_base = fields.String(
        load_default="https://api.telegram.org",
        validate=Regexp("https?://", error="must be an http(s) URL"),
        metadata=about("a Bot API server of your own"),
    )


def flat_name(key: str, each: fields.Field[Any]) -> str:
    """The name of a key's variable lowercased without PREFIX."""
    return (each.metadata.get("variable") or each.data_key or key).lower()


_POLICY = PolicySchema().fields
# every variable but the platforms' DATABASE_URL, by its name lowercased without PREFIX
VARIABLES = {flat_name(key, each): each for key, each in (_POLICY | Variables().fields).items()}


@dataclass(frozen=True)
class ServerSettings:
    """What the service itself runs with: where its state is and how it serves."""

    enabled: bool
    db_path: str
    database_url: str = field(repr=False)
    max_parallel: int
    wait_for_run: bool
    log_level: LogLevel = LogLevel.INFO
    max_body_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class AuthSettings:
    """Who may trigger (the bearer token, the Standard Webhooks keys) and who may read (the
    status token, or the hook token)."""

    token: str = field(repr=False)
    hmac_keys: tuple[bytes, ...] = field(repr=False)
    status_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class NotifySettings:
    """Where notifications go and when (the URLs carry tokens: never shown)."""

    urls: tuple[str, ...] = field(repr=False)
    min_gb: float
    failures: int
    telegram_bot_token: str = field(repr=False)
    telegram_chat_id: str
    telegram_api_base: str
    # what one notification may take per destination
    timeout_s: float = 10.0


@dataclass(frozen=True)
class TargetSettings:
    """The build hosts and how an alert finds its targets among them. With a targets file
    an alert prunes the hosts it names (`routes_by_host`); the env target alone is pruned by
    every firing alert, whichever host it names (as before fleets)."""

    fleet: Fleet
    routes_by_host: bool
    host_labels: tuple[str, ...]
    targets_file: str
    # the build host of the PRUNEHOOK_SSH_* variables (None when unset) and its policy
    env_target: Target | None
    base_policy: PrunePolicy


@dataclass(frozen=True)
class Settings:
    """What prunehook runs with, in the parts each layer takes."""

    server: ServerSettings
    auth: AuthSettings
    notify: NotifySettings
    targets: TargetSettings

    @classmethod
    def from_values(
        cls,
        file_targets: tuple[Target, ...] = (),
        notify_timeout_s: float = NotifySettings.timeout_s,
        **values: Any,
    ) -> Settings:
        """Settings from variables' values as parsed, each named as its variable lowercased
        without PRUNEHOOK_ (`ssh_port=22`); a variable left out takes its default. Tests give
        a notification's time limit too, which is no variable."""
        if unknown := sorted(set(values) - set(VARIABLES)):
            raise TypeError(f"no such variable: {', '.join(unknown)}")
        v = {
            name: values[name] if name in values else each.deserialize(missing)
            for name, each in VARIABLES.items()
        }
        base, host = _target_values(v), v["ssh_host"]
        env_target = make_target(name_for_host(host), host, base) if host else None
        env_fleet = Fleet((env_target,) if env_target else ())
        server = ServerSettings(
            v["enabled"],
            v["db_path"],
            v["database_url"],
            v["max_parallel"],
            v["wait_for_run"],
            v["log_level"],
        )
        notify = NotifySettings(
            urls=tuple(v["notify_urls"]),
            min_gb=v["notify_min_gb"],
            failures=v["notify_failures"],
            telegram_bot_token=v["telegram_bot_token"],
            telegram_chat_id=v["telegram_chat_id"],
            telegram_api_base=v["telegram_api_base"].rstrip("/"),
            timeout_s=notify_timeout_s,
        )
        targets = TargetSettings(
            fleet=Fleet(file_targets) if v["targets_file"] else env_fleet,
            routes_by_host=bool(v["targets_file"]),
            host_labels=tuple(v["host_labels"]),
            targets_file=v["targets_file"],
            env_target=env_target,
            base_policy=policy_of(base),
        )
        auth = AuthSettings(v["token"], tuple(parse_secrets(v["hmac_secret"])), v["status_token"])
        return cls(server, auth, notify, targets)


def _target_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The env target's values by make_target's names: a targets file's base too."""
    own = {key: values[flat_name(key, each)] for key, each in _POLICY.items()}
    return own | {
        "key": values["ssh_key"],
        "connect_timeout_s": values["ssh_connect_timeout_s"],
        "lease_grace_s": values["lease_grace_s"],
    }


def _unreadable(path: str) -> str | None:
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            handle.read(1)
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"
    return None


class _Reader:
    """Each variable's text through its field; a bad one warns and takes the default where
    that is safe (`fallback`), else it is an error naming the variable."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.errors: dict[str, list[str]] = {}
        self.bad: set[str] = set()

    def read(self, variable: str, each: fields.Field[Any], text: str) -> Any:
        if not text:
            return each.deserialize(missing)
        value: Any = text
        if isinstance(each, fields.Integer):  # the file's integers are TOML's; here, text
            with contextlib.suppress(ValueError):
                value = int(text)
        try:
            return each.deserialize(value)
        except ValidationError as error:
            self.bad.add(variable)
            problem = "; ".join(str(message).rstrip(".") for message in error.messages)
            if not each.metadata.get("fallback"):
                self.errors[variable] = [problem]
                return each.deserialize(missing)
            default = each.deserialize(missing)
            # the value, unless the message shows it already (or it is too long to show)
            shown = "" if repr(text) in problem or len(text) > 64 else f"={text!r}"
            self.warnings.append(f"{variable}{shown}: {problem}; using {default}")
            return default


def load_settings(
    dotenv: str | os.PathLike[str] | None = None, *, targets_file: str | None = None
) -> tuple[Settings, list[str]]:
    """Settings from os.environ (and `dotenv`, which never overrides it), plus warnings;
    `targets_file` stands for PRUNEHOOK_TARGETS_FILE (`hosts add` checks a draft).

    Raises ConfigError naming every variable that has no safe default.
    """
    env = Env(eager=False)
    if dotenv is not None and Path(dotenv).is_file():
        env.read_env(str(dotenv), recurse=False, override=False)
    reader = _Reader()
    warnings, errors = reader.warnings, reader.errors
    texts = {name: env.str(PREFIX + name.upper(), "").strip() for name in VARIABLES}
    values = {
        name: reader.read(PREFIX + name.upper(), each, texts[name])
        for name, each in VARIABLES.items()
    }
    until = values["until"]
    if texts["until"] not in ("", until) and f"{PREFIX}UNTIL" not in reader.bad:
        warnings.append(
            f"{PREFIX}UNTIL={texts['until']!r} is read as {until!r} (Docker has no d/w)"
        )
    if duration_seconds(until) < 60:
        warnings.append(f"{PREFIX}UNTIL={until!r} prunes nearly all cache, fresh builds too")
    key_file, key = values["ssh_key_file"], values["ssh_key"]
    if key_file and key:
        errors[f"{PREFIX}SSH_KEY"] = [f"set either {PREFIX}SSH_KEY or {PREFIX}SSH_KEY_FILE"]
    elif key_file and (problem := _unreadable(key_file)):
        errors[f"{PREFIX}SSH_KEY_FILE"] = [problem]
    bot, chat = values["telegram_bot_token"], values["telegram_chat_id"]
    if bool(bot) != bool(chat):
        missing_one = "TELEGRAM_CHAT_ID" if bot else "TELEGRAM_BOT_TOKEN"
        errors[f"{PREFIX}{missing_one}"] = ["Telegram needs both the bot token and the chat id"]
    if values["notify_urls"] or bot:
        from webhook.destinations import config_errors

        errors.update(config_errors(values["notify_urls"], bot, chat, values["telegram_api_base"]))
    # the platforms' own variable (Heroku, Render, Fly, ...) when ours is unset
    url_variable = f"{PREFIX}DATABASE_URL"
    if not values["database_url"] and os.environ.get("DATABASE_URL", "").strip():
        url_variable = "DATABASE_URL"
        values["database_url"] = reader.read(
            url_variable, VARIABLES["database_url"], os.environ["DATABASE_URL"].strip()
        )
    if values["database_url"] and not (values["token"] or values["hmac_secret"]):
        errors.setdefault(url_variable, []).append(
            f"replicas share one database: set {PREFIX}TOKEN (or {PREFIX}HMAC_SECRET), as a"
            " token generated by each replica would differ between them"
        )
    if values["ssh_host"] and not (key_file or key):
        warnings.append(
            f"{PREFIX}SSH_HOST is set but no key is: set {PREFIX}SSH_KEY_FILE or {PREFIX}SSH_KEY"
        )
    if values["ssh_known_hosts_text"]:  # still set: no function platform's cold start read it
        warnings.append(
            f"{PREFIX}SSH_KNOWN_HOSTS_TEXT is read only on function platforms (docs/functions.md):"
            f" a server reads the host keys from the file {PREFIX}SSH_KNOWN_HOSTS names"
        )
    if errors:
        raise ConfigError(errors)
    if targets_file is not None:
        values["targets_file"] = targets_file
    targets_file = values["targets_file"]
    targets = _read_targets_file(targets_file, _target_values(values)) if targets_file else ()
    settings = Settings.from_values(file_targets=targets, **values)
    paths = {target.ssh.known_hosts_path for target in settings.targets.fleet}
    for path in sorted(p for p in paths if not p.is_file()):
        missing = f"{path} {'is no file' if path.exists() else 'does not exist'}"
        warnings.append(
            f"{PREFIX}TARGETS_FILE: known_hosts {missing}; prunes of the targets"
            " that use it will be refused until their host keys are there"
            if targets_file
            else f"{PREFIX}SSH_KNOWN_HOSTS: {missing}; every prune will be"
            " refused until the host key is there (ssh-keyscan -p PORT HOST >> FILE)"
        )
    return settings, warnings


def _read_targets_file(path: str, base: Mapping[str, Any]) -> tuple[Target, ...]:
    """The targets of PRUNEHOOK_TARGETS_FILE; ConfigError names the file, target and key."""
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise ConfigError(
            {f"{PREFIX}TARGETS_FILE": [f"cannot read {path}: {error.strerror}"]}
        ) from error
    try:
        targets = parse_targets(read_document(raw, path), path, base)
    except TargetsFileError as error:
        problems = error.problems
    else:
        problems = []
        for target in targets:
            where = f"targets.{target.name}"
            if target.ssh.key_file and (problem := _unreadable(target.ssh.key_file)):
                problems.append(f"{where}.key_file: {problem}")
            elif not (target.ssh.key_file or target.ssh.key):
                problems.append(
                    f"{where}: no key: set key_file (here or in [defaults]) or {PREFIX}SSH_KEY_FILE"
                )
    if problems:
        raise ConfigError({f"{PREFIX}TARGETS_FILE": [f"{path}: {each}" for each in problems]})
    return targets
