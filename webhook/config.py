"""Settings from the environment (and `.env`), validated once at startup.

Every problem is reported at once. Where the seed has a safe default
(interval, retry delay, timeout, notify threshold, and `until`: 24h, as the
seed's TC-08 says) a bad value is replaced with a warning; where none is safe
(a key file that cannot be read, a port that is not a port) the service
refuses to start and names the variable.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from environs import Env, EnvValidationError
from marshmallow.validate import Range

from webhook.core.disk import FreeGoal, SizeError, parse_configured_size, parse_free_goal
from webhook.core.duration import DurationError, duration_seconds, normalize_until
from webhook.core.targets import (
    DEFAULT_CRITICAL_INTERVAL_S,
    DEFAULT_CRITICAL_PERCENT,
    DEFAULT_DOCKER_ROOT,
    DEFAULT_INTERVAL_S,
    DEFAULT_LEASE_GRACE_S,
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_TIMEOUT_S,
    DEFAULT_UNTIL,
    DOCKER_ROOT_RULE,
    Fleet,
    PrunePolicy,
    SSHEndpoint,
    Target,
    TargetsFileError,
    is_docker_root,
    name_for_host,
    parse_targets,
    read_document,
)
from webhook.core.verdicts import DEFAULT_HOST_LABELS
from webhook.web.signatures import MIN_KEY_BYTES, parse_secrets

PREFIX = "PRUNEHOOK_"
DEFAULT_NOTIFY_FAILURES = 3
# a streak is read from the run history (100 runs a target), two runs more than this at most
MAX_NOTIFY_FAILURES = 50


class ConfigError(Exception):
    """The configuration cannot be used; `errors` maps each variable to its problems."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        lines = [f"  {name}: {'; '.join(messages)}" for name, messages in sorted(errors.items())]
        super().__init__("invalid prunehook configuration:\n" + "\n".join(lines))


@dataclass(frozen=True)
class ServerSettings:
    """What the service itself runs with: where its state is and how it serves."""

    enabled: bool
    db_path: str
    database_url: str = field(repr=False)
    max_body_bytes: int
    max_parallel: int
    wait_for_run: bool


@dataclass(frozen=True)
class AuthSettings:
    """Who may trigger: the bearer token and the Standard Webhooks keys."""

    token: str = field(repr=False)
    hmac_keys: tuple[bytes, ...] = field(repr=False)


@dataclass(frozen=True)
class NotifySettings:
    """Where notifications go and when (the URLs carry tokens: never shown)."""

    urls: tuple[str, ...] = field(repr=False)
    min_gb: float
    failures: int
    timeout_s: float
    telegram_bot_token: str = field(repr=False)
    telegram_chat_id: str
    telegram_api_base: str


@dataclass(frozen=True)
class TargetSettings:
    """The build hosts and how an alert finds its targets among them."""

    fleet: Fleet
    routes_by_host: bool
    host_labels: tuple[str, ...]
    targets_file: str


@dataclass(frozen=True)
class Settings:
    """Every variable, as read (flat: one record to load, compare and override in tests).
    Each layer takes the part it needs: `server`, `auth`, `notify`, `targets` (each made
    once: a hook reads `auth` on every request)."""

    enabled: bool = True
    ssh_host: str = ""
    ssh_port: int = 22
    ssh_user: str = field(default_factory=getpass.getuser)
    ssh_key_file: str = ""
    ssh_key: str = field(default="", repr=False)
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout_s: float = 10.0
    interval_s: float = DEFAULT_INTERVAL_S
    retry_after_s: float = DEFAULT_RETRY_AFTER_S
    until: str = DEFAULT_UNTIL
    prune_all: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    lease_grace_s: float = DEFAULT_LEASE_GRACE_S
    token: str = field(default="", repr=False)
    hmac_secret: str = field(default="", repr=False)
    db_path: str = ""
    notify_min_gb: float = 0.0
    telegram_bot_token: str = field(default="", repr=False)
    telegram_chat_id: str = ""
    telegram_api_base: str = "https://api.telegram.org"
    # apprise URLs (PRUNEHOOK_NOTIFY_URLS); they carry tokens
    notify_urls: tuple[str, ...] = field(default=(), repr=False)
    notify_failures: int = DEFAULT_NOTIFY_FAILURES
    # what one notification may take per destination; not read from the environment
    notify_timeout_s: float = 10.0
    max_body_bytes: int = 1024 * 1024
    # PRUNEHOOK_TARGETS_FILE and the targets read from it; none: the env target alone
    targets_file: str = ""
    file_targets: tuple[Target, ...] = ()
    host_labels: tuple[str, ...] = DEFAULT_HOST_LABELS
    max_parallel: int = 8
    # disk-aware pruning: the env target's goals, critical path and Docker data root (and a
    # targets file's defaults)
    max_cache: int | None = None
    min_free: FreeGoal | None = None
    critical_percent: float = DEFAULT_CRITICAL_PERCENT
    critical_interval_s: float = DEFAULT_CRITICAL_INTERVAL_S
    docker_root: str = DEFAULT_DOCKER_ROOT
    # PostgreSQL (replicas, ephemeral disks); empty: the SQLite file db_path
    database_url: str = field(default="", repr=False)
    # hooks answer only once the run is over (platforms that stop a process's CPU after)
    wait_for_run: bool = False

    @cached_property
    def server(self) -> ServerSettings:
        return ServerSettings(
            enabled=self.enabled,
            db_path=self.db_path,
            database_url=self.database_url,
            max_body_bytes=self.max_body_bytes,
            max_parallel=self.max_parallel,
            wait_for_run=self.wait_for_run,
        )

    @cached_property
    def auth(self) -> AuthSettings:
        return AuthSettings(self.token, tuple(self.hmac_keys))

    @cached_property
    def notify(self) -> NotifySettings:
        return NotifySettings(
            urls=self.notify_urls,
            min_gb=self.notify_min_gb,
            failures=self.notify_failures,
            timeout_s=self.notify_timeout_s,
            telegram_bot_token=self.telegram_bot_token,
            telegram_chat_id=self.telegram_chat_id,
            telegram_api_base=self.telegram_api_base,
        )

    @cached_property
    def targets(self) -> TargetSettings:
        return TargetSettings(self.fleet, self.routes_by_host, self.host_labels, self.targets_file)

    @property
    def base_endpoint(self) -> SSHEndpoint:
        """The `PRUNEHOOK_SSH_*` connection: the env target's, and a targets file's defaults."""
        return SSHEndpoint(
            address=self.ssh_host,
            port=self.ssh_port,
            user=self.ssh_user,
            key_file=self.ssh_key_file,
            key=self.ssh_key,
            known_hosts=self.known_hosts,
            connect_timeout_s=self.connect_timeout_s,
        )

    @property
    def base_policy(self) -> PrunePolicy:
        return PrunePolicy(
            until=self.until,
            prune_all=self.prune_all,
            interval_s=self.interval_s,
            retry_after_s=self.retry_after_s,
            timeout_s=self.timeout_s,
            lease_grace_s=self.lease_grace_s,
            max_cache=self.max_cache,
            min_free=self.min_free,
            critical_percent=self.critical_percent,
            critical_interval_s=self.critical_interval_s,
            docker_root=self.docker_root,
        )

    @cached_property
    def env_target(self) -> Target | None:
        """The build host of the `PRUNEHOOK_SSH_*` variables; None when unset."""
        if not self.ssh_host:
            return None
        return Target(name_for_host(self.ssh_host), self.base_endpoint, self.base_policy)

    @cached_property
    def fleet(self) -> Fleet:
        """Every target: a targets file's, or the env target alone (or none)."""
        if self.targets_file:
            return Fleet(self.file_targets)
        return Fleet((self.env_target,) if self.env_target else ())

    @property
    def routes_by_host(self) -> bool:
        """With a targets file an alert prunes the hosts it names; the env target alone
        is pruned by every firing alert, whichever host it names (as before fleets)."""
        return bool(self.targets_file)

    @property
    def legacy_state_key(self) -> str | None:
        """How state files before target names keyed the row: `user@host:port`."""
        return f"{self.ssh_user}@{self.ssh_host}:{self.ssh_port}" if self.ssh_host else None

    @cached_property
    def hmac_keys(self) -> list[bytes]:
        return parse_secrets(self.hmac_secret)


def _number_or_default(
    env: Env,
    name: str,
    default: float,
    warnings: list[str],
    *,
    allow_zero: bool = False,
) -> float | int:
    raw = env.str(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
        bound = "zero or more" if allow_zero else "more than zero"
        warnings.append(f"{PREFIX}{name}={raw!r} is not a number {bound}; using {default}")
        return default
    return int(value) if value.is_integer() else value


def _disk_settings(env: Env, warnings: list[str], errors: dict[str, list[str]]) -> dict[str, Any]:
    """The disk-aware keys of the env target: PRUNEHOOK_MAX_CACHE, _MIN_FREE, _DOCKER_ROOT
    (no safe default for a goal or a path mistyped: refused), _CRITICAL_PERCENT and
    _CRITICAL_INTERVAL_S (their defaults are safe: a warning)."""
    values: dict[str, Any] = {}
    with env.prefixed(PREFIX):
        max_cache = env.str("MAX_CACHE", "").strip()
        min_free = env.str("MIN_FREE", "").strip()
        docker_root = env.str("DOCKER_ROOT", "").strip()
        percent = _number_or_default(env, "CRITICAL_PERCENT", DEFAULT_CRITICAL_PERCENT, warnings)
        values["critical_interval_s"] = _number_or_default(
            env, "CRITICAL_INTERVAL_S", DEFAULT_CRITICAL_INTERVAL_S, warnings
        )
    if percent > 100:
        warnings.append(
            f"{PREFIX}CRITICAL_PERCENT={percent:g} is over 100; using {DEFAULT_CRITICAL_PERCENT:g}"
        )
        percent = DEFAULT_CRITICAL_PERCENT
    values["critical_percent"] = percent
    try:
        if max_cache:
            values["max_cache"] = parse_configured_size(max_cache)
    except SizeError as error:
        errors[f"{PREFIX}MAX_CACHE"] = [str(error)]
    try:
        if min_free:
            values["min_free"] = parse_free_goal(min_free)
    except SizeError as error:
        errors[f"{PREFIX}MIN_FREE"] = [str(error)]
    if docker_root:
        if is_docker_root(docker_root):
            values["docker_root"] = docker_root
        else:
            errors[f"{PREFIX}DOCKER_ROOT"] = [DOCKER_ROOT_RULE]
    return values


def _count_or_default(env: Env, name: str, default: int, most: int, warnings: list[str]) -> int:
    """A whole number from 0 to `most`, or the default with a warning."""
    raw = env.str(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > most:
        warnings.append(f"{PREFIX}{name}={raw!r} is not a whole number 0-{most}; using {default}")
        return default
    return int(raw)


def _read_key_file(path: str, errors: dict[str, list[str]]) -> None:
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            handle.read(1)
    except OSError as error:
        errors.setdefault(f"{PREFIX}SSH_KEY_FILE", []).append(
            f"cannot read {path}: {error.strerror}"
        )


def _check_database_url(
    url: str, has_secret: bool, name: str, errors: dict[str, list[str]]
) -> None:
    if not url.startswith(("postgresql://", "postgres://")):
        # never echo the URL: it may carry a password
        errors[name] = ["must be a postgresql:// (or postgres://) URL"]
    if not has_secret:
        errors.setdefault(name, []).append(
            f"replicas share one database: set {PREFIX}TOKEN (or {PREFIX}HMAC_SECRET), as a"
            " token generated by each replica would differ between them"
        )


def _read_targets_file(
    path: str, base: SSHEndpoint, base_policy: PrunePolicy, errors: dict[str, list[str]]
) -> tuple[Target, ...]:
    name = f"{PREFIX}TARGETS_FILE"
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            raw = handle.read()
    except OSError as error:
        errors[name] = [f"cannot read {path}: {error.strerror}"]
        return ()
    try:
        targets = parse_targets(read_document(raw, path), path, base, base_policy)
    except TargetsFileError as error:
        errors[name] = [f"{path}: {problem}" for problem in error.problems]
        return ()
    for target in targets:
        if target.ssh.key_file:
            problems: dict[str, list[str]] = {}
            _read_key_file(target.ssh.key_file, problems)
            for message in problems.get(f"{PREFIX}SSH_KEY_FILE", []):
                where = f"{path}: targets.{target.name}.key_file"
                errors.setdefault(name, []).append(f"{where}: {message}")
        elif not target.ssh.key:
            errors.setdefault(name, []).append(
                f"{path}: targets.{target.name}: no key: set key_file (here or in [defaults])"
                f" or {PREFIX}SSH_KEY_FILE"
            )
    return targets


def load_settings(dotenv: str | os.PathLike[str] | None = None) -> tuple[Settings, list[str]]:
    """Settings from os.environ (and `dotenv`, which never overrides it), plus warnings.

    Raises ConfigError naming every variable that has no safe default.
    """
    env = Env(eager=False)
    if dotenv is not None and Path(dotenv).is_file():
        env.read_env(str(dotenv), recurse=False, override=False)
    warnings: list[str] = []
    errors: dict[str, list[str]] = {}

    with env.prefixed(PREFIX):
        enabled = env.bool("ENABLED", True)
        ssh_host = env.str("SSH_HOST", "").strip()
        ssh_port = env.int("SSH_PORT", 22, validate=Range(min=1, max=65535))
        ssh_user = env.str("SSH_USER", "").strip() or getpass.getuser()
        ssh_key_file = env.str("SSH_KEY_FILE", "").strip()
        ssh_key = env.str("SSH_KEY", "").strip()
        known_hosts = env.str("SSH_KNOWN_HOSTS", "").strip() or "~/.ssh/known_hosts"
        prune_all = env.bool("ALL", False)
        until_raw = env.str("UNTIL", "").strip() or DEFAULT_UNTIL
        token = env.str("TOKEN", "").strip()
        hmac_secret = env.str("HMAC_SECRET", "").strip()
        db_path = env.str("DB_PATH", "").strip()
        telegram_bot_token = env.str("TELEGRAM_BOT_TOKEN", "").strip()
        telegram_chat_id = env.str("TELEGRAM_CHAT_ID", "").strip()
        telegram_api_base = env.str("TELEGRAM_API_BASE", "https://api.telegram.org").strip()
        notify_urls = tuple(env.str("NOTIFY_URLS", "").split())
        notify_failures = _count_or_default(
            env, "NOTIFY_FAILURES", DEFAULT_NOTIFY_FAILURES, MAX_NOTIFY_FAILURES, warnings
        )
        interval_s = _number_or_default(env, "INTERVAL_S", DEFAULT_INTERVAL_S, warnings)
        retry_after_s = _number_or_default(env, "RETRY_AFTER_S", DEFAULT_RETRY_AFTER_S, warnings)
        timeout_s = _number_or_default(env, "TIMEOUT_S", DEFAULT_TIMEOUT_S, warnings)
        lease_grace_s = _number_or_default(env, "LEASE_GRACE_S", DEFAULT_LEASE_GRACE_S, warnings)
        connect_timeout_s = _number_or_default(env, "SSH_CONNECT_TIMEOUT_S", 10.0, warnings)
        notify_min_gb = _number_or_default(env, "NOTIFY_MIN_GB", 0.0, warnings, allow_zero=True)
        database_url = env.str("DATABASE_URL", "").strip()
        wait_for_run = env.bool("WAIT_FOR_RUN", False)
        targets_file = env.str("TARGETS_FILE", "").strip()
        host_labels = tuple(env.list("HOST_LABELS", list(DEFAULT_HOST_LABELS)))
        max_parallel = env.int("MAX_PARALLEL", 8, validate=Range(min=1, max=256))
    disk = _disk_settings(env, warnings, errors)

    try:
        env.seal()
    except EnvValidationError as error:
        for name, messages in error.error_messages.items():
            errors[name] = [str(message) for message in messages]

    try:
        until = normalize_until(until_raw)
        if until != until_raw:
            warnings.append(f"{PREFIX}UNTIL={until_raw!r} is read as {until!r} (Docker has no d/w)")
        if duration_seconds(until) < 60:
            warnings.append(f"{PREFIX}UNTIL={until!r} prunes nearly all cache, fresh builds too")
    except DurationError as error:
        # a typo must never leave disk-full alerts unanswered: the documented default (TC-08)
        until = DEFAULT_UNTIL
        warnings.append(f"{PREFIX}UNTIL: {error}; using {DEFAULT_UNTIL}")
    if ssh_key_file and ssh_key:
        errors[f"{PREFIX}SSH_KEY"] = ["set either PRUNEHOOK_SSH_KEY or PRUNEHOOK_SSH_KEY_FILE"]
    elif ssh_key_file:
        _read_key_file(ssh_key_file, errors)
    if bool(telegram_bot_token) != bool(telegram_chat_id):
        missing = "TELEGRAM_CHAT_ID" if telegram_bot_token else "TELEGRAM_BOT_TOKEN"
        errors[f"{PREFIX}{missing}"] = ["Telegram needs both the bot token and the chat id"]
    if notify_urls or telegram_bot_token:
        from webhook.notify import config_errors

        errors.update(
            config_errors(notify_urls, telegram_bot_token, telegram_chat_id, telegram_api_base)
        )
    try:
        parse_secrets(hmac_secret)
    except ValueError as error:
        errors[f"{PREFIX}HMAC_SECRET"] = [str(error)]
    if token and len(token.encode()) < MIN_KEY_BYTES:
        errors[f"{PREFIX}TOKEN"] = [
            f"is {len(token.encode())} bytes; at least {MIN_KEY_BYTES} are needed"
            " (e.g. openssl rand -hex 32)"
        ]
    if not telegram_api_base.startswith(("https://", "http://")):
        errors[f"{PREFIX}TELEGRAM_API_BASE"] = ["must be an http(s) URL"]
    # the platforms' own variable (Heroku, Render, Fly, ...) when ours is unset
    url_variable = f"{PREFIX}DATABASE_URL"
    if not database_url and os.environ.get("DATABASE_URL", "").strip():
        database_url, url_variable = os.environ["DATABASE_URL"].strip(), "DATABASE_URL"
    if database_url:
        _check_database_url(database_url, bool(token or hmac_secret), url_variable, errors)
    host_labels = tuple(label.strip() for label in host_labels if label.strip())
    if not host_labels:
        errors[f"{PREFIX}HOST_LABELS"] = ["name at least one label, e.g. host,instance"]
    if ssh_host and not (ssh_key_file or ssh_key):
        warnings.append(
            f"{PREFIX}SSH_HOST is set but no key is: set {PREFIX}SSH_KEY_FILE or {PREFIX}SSH_KEY"
        )
    if errors:
        raise ConfigError(errors)

    settings = Settings(
        database_url=database_url,
        wait_for_run=wait_for_run,
        targets_file=targets_file,
        host_labels=host_labels,
        max_parallel=max_parallel,
        enabled=enabled,
        ssh_host=ssh_host,
        ssh_port=ssh_port,
        ssh_user=ssh_user,
        ssh_key_file=ssh_key_file,
        ssh_key=ssh_key,
        known_hosts=known_hosts,
        connect_timeout_s=connect_timeout_s,
        interval_s=interval_s,
        retry_after_s=retry_after_s,
        until=until,
        prune_all=prune_all,
        timeout_s=timeout_s,
        lease_grace_s=lease_grace_s,
        token=token,
        hmac_secret=hmac_secret,
        db_path=db_path,
        notify_min_gb=notify_min_gb,
        telegram_bot_token=telegram_bot_token,
        telegram_chat_id=telegram_chat_id,
        telegram_api_base=telegram_api_base.rstrip("/"),
        notify_urls=notify_urls,
        notify_failures=notify_failures,
        **disk,
    )
    if targets_file:
        targets = _read_targets_file(
            targets_file, settings.base_endpoint, settings.base_policy, errors
        )
        if errors:
            raise ConfigError(errors)
        settings = dataclasses.replace(settings, file_targets=targets)
        paths = {t.ssh.known_hosts_path for t in targets}
        for path in sorted(str(p) for p in paths if not p.is_file()):
            warnings.append(
                f"{PREFIX}TARGETS_FILE: known_hosts {path} does not exist; prunes of the targets"
                " that use it will be refused until their host keys are there"
            )
    elif ssh_host and not (known_hosts_file := settings.base_endpoint.known_hosts_path).is_file():
        warnings.append(
            f"{PREFIX}SSH_KNOWN_HOSTS: {known_hosts_file} does not exist; every prune "
            "will be refused until the host key is there (ssh-keyscan -p PORT HOST >> FILE)"
        )
    return settings, warnings
