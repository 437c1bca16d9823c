"""The fleet: each build host is a `Target`, with its SSH endpoint and its prune policy.

Pure: no I/O. A targets file is parsed from the dict `tomllib` made of it
(`parse_targets`); the single target of the `PRUNEHOOK_SSH_*` variables is
built by the configuration. How an alert's host value finds its targets
(`Fleet.concerning`) lives here too, so that a name from a payload can only
ever select a configured target, never be connected to.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields
from marshmallow.validate import Length, Range, Regexp

from webhook.core.disk import (
    FreeGoal,
    Goals,
    SizeError,
    parse_configured_size,
    parse_free_goal,
)
from webhook.core.duration import DurationError, normalize_until

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
_NAME = re.compile(NAME_PATTERN)
NAME_MAX = 63
DEFAULT_UNTIL = "24h"
DEFAULT_INTERVAL_S = 21600
DEFAULT_RETRY_AFTER_S = 600
DEFAULT_TIMEOUT_S = 120
# how long past the prune timeout an in-flight run's lease holds off others
DEFAULT_LEASE_GRACE_S = 60
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_CRITICAL_PERCENT = 95.0
DEFAULT_CRITICAL_INTERVAL_S = 900
DEFAULT_DOCKER_ROOT = "/var/lib/docker"
# an absolute path of plain characters: it reaches df's command line (and the host's guard,
# which checks it with the same pattern), so nothing a shell or df would read as more
DOCKER_ROOT_PATTERN = r"^/[A-Za-z0-9._/+-]{0,255}\Z"
DOCKER_ROOT = re.compile(DOCKER_ROOT_PATTERN)
DOCKER_ROOT_RULE = "an absolute path of letters, digits and ._+-/ (no ..), such as /var/lib/docker"


def is_docker_root(value: str) -> bool:
    """Whether `value` may be the `docker_root` that df measures."""
    return bool(DOCKER_ROOT.match(value)) and "/../" not in f"{value}/"


@dataclass(frozen=True)
class SSHEndpoint:
    """Where and as whom prunehook logs in; the host key must be in `known_hosts`."""

    address: str
    port: int = 22
    user: str = "root"
    key_file: str = ""
    key: str = field(default="", repr=False)
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    connect_timeout_s: float = 10.0

    def __str__(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts).expanduser()


@dataclass(frozen=True)
class PrunePolicy:
    """What is pruned on a target and how often."""

    until: str = DEFAULT_UNTIL
    prune_all: bool = False
    interval_s: float = DEFAULT_INTERVAL_S
    retry_after_s: float = DEFAULT_RETRY_AFTER_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    lease_grace_s: float = DEFAULT_LEASE_GRACE_S
    # disk-aware pruning (DESIGN.md): the goals of stage 2, the critical path, what df measures
    max_cache: int | None = None
    min_free: FreeGoal | None = None
    critical_percent: float = DEFAULT_CRITICAL_PERCENT
    critical_interval_s: float = DEFAULT_CRITICAL_INTERVAL_S
    docker_root: str = DEFAULT_DOCKER_ROOT

    @property
    def lease_s(self) -> float:
        """How long an in-flight run holds its target before it is given up as lost."""
        return self.timeout_s + self.lease_grace_s

    @property
    def goals(self) -> Goals:
        return Goals(self.max_cache, self.min_free)


@dataclass(frozen=True)
class Target:
    """One build host. `name` is stable: state is keyed by it, not by the SSH endpoint."""

    name: str
    ssh: SSHEndpoint
    policy: PrunePolicy = PrunePolicy()
    aliases: tuple[str, ...] = ()

    @cached_property
    def known_as(self) -> frozenset[str]:
        """Every host value an alert may use for this target, normalized (made once: each
        watchdog or Alertmanager trigger asks it of every target it concerns)."""
        return frozenset(normalize_host(n) for n in (self.name, self.ssh.address, *self.aliases))


def normalize_host(value: str) -> str:
    """`Build-1.Example:9100` -> `build-1.example`; `[::1]:22` -> `::1`; `::1` stays."""
    text = value.strip().lower()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        # `[v6]` or `[v6]:port`; anything else after the bracket is no port
        return inside if bracket and (not rest or _is_port(rest)) else text
    host, colon, port = text.rpartition(":")
    if colon and _is_port(colon + port) and ":" not in host:
        return host
    return text


def _is_port(suffix: str) -> bool:
    """`:22`; not `:`, `:ssh` or digits of another script."""
    port = suffix.removeprefix(":")
    return suffix.startswith(":") and port.isdigit() and port.isascii()


def name_for_host(host: str) -> str:
    """A target name for the single target of `PRUNEHOOK_SSH_HOST`: its host, made a name."""
    text = re.sub(r"[^a-z0-9._-]+", "-", host.strip().lower()).strip("-._")[:NAME_MAX]
    return text or "default"


@dataclass(frozen=True)
class Fleet:
    """Every configured target, in the order configured."""

    targets: tuple[Target, ...] = ()
    # derived from `targets` in __post_init__: not arguments, and not part of equality
    _index: dict[str, tuple[Target, ...]] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, Target] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[Target]] = {}
        for target in self.targets:
            for known in target.known_as:
                index.setdefault(known, []).append(target)
        object.__setattr__(self, "_index", {k: tuple(v) for k, v in index.items()})
        object.__setattr__(self, "_by_name", {t.name: t for t in self.targets})

    def __iter__(self) -> Iterator[Target]:
        return iter(self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(target.name for target in self.targets)

    def get(self, name: str) -> Target | None:
        return self._by_name.get(name)

    def unknown(self, names: Iterable[str]) -> list[str]:
        """Those of `names` that name no target here, in their order."""
        return [name for name in names if name not in self._by_name]

    def concerning(self, host_value: str) -> tuple[Target, ...]:
        """The targets whose name, host or alias is `host_value` (case and :port aside)."""
        return self._index.get(normalize_host(host_value), ())


class TargetsFileError(ValueError):
    """A targets file that cannot be used; `problems` name the file, the target and the key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


_TABLE_LINE = re.compile(r"\s*\[\[?([^\]]*)\]")
_KEY_LINE = re.compile(r"\s*([\w.\-\"' ]+?)\s*=")
_TOML_ERROR_LINE = re.compile(r"\(at line (\d+), column \d+\)$")


def _place(text: str, line: int) -> str:
    """The table and key of line `line` (1-based) of a TOML text, `targets.build-2.port`,
    for a problem tomllib reports by line alone; "" when it cannot tell."""
    lines = text.split("\n")
    table = ""
    for content in lines[: max(line, 0)]:
        header = _TABLE_LINE.match(content)
        if header:
            table = re.sub(r"[\"' ]", "", header.group(1))
    current = lines[line - 1] if 0 < line <= len(lines) else ""
    key = _KEY_LINE.match(current) if not _TABLE_LINE.match(current) else None
    return ".".join(filter(None, (table, re.sub(r"[\"' ]", "", key.group(1)) if key else "")))


def _where(place: str) -> str:
    return f"{place}: " if place else ""


def read_document(raw: bytes, source: str) -> dict[str, Any]:
    """A targets file's bytes as tomllib reads them: UTF-8 text in TOML. TargetsFileError
    says where they are neither: the table and key, and the line."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        where = _where(_place(raw.decode(errors="replace"), line))
        problem = f"not UTF-8 text, as TOML must be: byte 0x{raw[error.start]:02x} at line {line}"
        raise TargetsFileError(source, [where + problem]) from error
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = _TOML_ERROR_LINE.search(str(error))
        where = _where(_place(text, int(found.group(1)))) if found else ""
        raise TargetsFileError(source, [f"{where}not valid TOML: {error}"]) from error


def _go_duration(value: str) -> None:
    try:
        normalize_until(value)
    except DurationError as error:
        raise ValidationError(str(error)) from error


class _Size(fields.Field[int]):
    """A size: bytes (an integer or digits), or `10GB` / `10GiB`."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int:
        try:
            return parse_configured_size(value)
        except SizeError as error:
            raise ValidationError(str(error)) from error


class _FreeGoal(fields.Field[FreeGoal]):
    """`min_free`: a size, or a percentage of the filesystem such as `15%`."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> FreeGoal:
        try:
            return parse_free_goal(value)
        except SizeError as error:
            raise ValidationError(str(error)) from error


def _docker_root(value: str) -> None:
    if not is_docker_root(value):
        raise ValidationError(DOCKER_ROOT_RULE)


class _PolicyFields(Schema):
    """Keys a target may set, and `[defaults]` for all of them."""

    class Meta:
        unknown = RAISE

    user = fields.String(validate=Length(min=1, max=64))
    port = fields.Integer(strict=True, validate=Range(min=1, max=65535))
    key_file = fields.String(validate=Length(min=1, max=4096))
    known_hosts = fields.String(validate=Length(min=1, max=4096))
    until = fields.String(validate=[Length(min=1, max=64), _go_duration])
    all = fields.Boolean()
    interval_s = fields.Float(validate=Range(min=0, min_inclusive=False, max=10 * 365 * 86400))
    retry_after_s = fields.Float(validate=Range(min=0, min_inclusive=False, max=365 * 86400))
    timeout_s = fields.Float(validate=Range(min=0, min_inclusive=False, max=86400))
    max_cache = _Size()
    min_free = _FreeGoal()
    critical_percent = fields.Float(validate=Range(min=0, min_inclusive=False, max=100))
    critical_interval_s = fields.Float(
        validate=Range(min=0, min_inclusive=False, max=10 * 365 * 86400)
    )
    docker_root = fields.String(validate=_docker_root)


class _TargetFields(_PolicyFields):
    host = fields.String(required=True, validate=Length(min=1, max=253))
    aliases = fields.List(fields.String(validate=Length(min=1, max=253)), load_default=list)


_NAME_RULE = Regexp(_NAME, error=f"a target name must match {NAME_PATTERN}")


def _messages(prefix: str, errors: Mapping[str, Any]) -> Iterable[str]:
    for key, messages in sorted(errors.items()):
        if isinstance(messages, Mapping):
            yield from _messages(f"{prefix}.{key}", messages)
        else:
            listed = messages if isinstance(messages, list) else [messages]
            yield f"{prefix}.{key}: {'; '.join(str(m) for m in listed)}"


def parse_targets(
    document: Mapping[str, Any], source: str, base: SSHEndpoint, base_policy: PrunePolicy
) -> tuple[Target, ...]:
    """Targets from a parsed targets file; `base` and `base_policy` fill what it leaves out.

    Raises TargetsFileError naming every problem (`targets.NAME.KEY: why`) at once.
    """
    problems: list[str] = []
    unknown = sorted(set(document) - {"defaults", "targets"})
    expected = "expected [defaults] and [targets.NAME]"
    problems += [f"{key}: unknown table ({expected})" for key in unknown]
    defaults: dict[str, Any] = {}
    raw_defaults = document.get("defaults", {})
    if not isinstance(raw_defaults, Mapping):
        problems.append("defaults: must be a table")
    else:
        try:
            defaults = _PolicyFields().load(raw_defaults)
        except ValidationError as error:
            problems += _messages("defaults", error.normalized_messages())
    tables = document.get("targets", {})
    if not isinstance(tables, Mapping) or not tables:
        problems.append("targets: no [targets.NAME] table: name at least one build host")
        tables = {}
    targets: list[Target] = []
    for name, table in tables.items():
        where = f"targets.{name}"
        try:
            _NAME_RULE(name)
            if len(name) > NAME_MAX:
                raise ValidationError(f"longer than {NAME_MAX} characters")
        except ValidationError as error:
            problems.append(f"{where}: {'; '.join(error.messages)}")
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        try:
            values = {**defaults, **_TargetFields().load(table)}
        except ValidationError as error:
            problems += _messages(where, error.normalized_messages())
            continue
        targets.append(_target(name, values, base, base_policy))
    problems += _shared_names(targets)
    if problems:
        raise TargetsFileError(source, problems)
    return tuple(targets)


def _target(
    name: str, values: Mapping[str, Any], base: SSHEndpoint, base_policy: PrunePolicy
) -> Target:
    ssh = SSHEndpoint(
        address=values["host"].strip(),
        port=values.get("port", base.port),
        user=values.get("user", base.user),
        key_file=values.get("key_file", base.key_file),
        key="" if "key_file" in values else base.key,
        known_hosts=values.get("known_hosts", base.known_hosts),
        connect_timeout_s=base.connect_timeout_s,
    )
    policy = PrunePolicy(
        until=normalize_until(values["until"]) if "until" in values else base_policy.until,
        prune_all=values.get("all", base_policy.prune_all),
        interval_s=values.get("interval_s", base_policy.interval_s),
        retry_after_s=values.get("retry_after_s", base_policy.retry_after_s),
        timeout_s=values.get("timeout_s", base_policy.timeout_s),
        lease_grace_s=base_policy.lease_grace_s,
        max_cache=values.get("max_cache", base_policy.max_cache),
        min_free=values.get("min_free", base_policy.min_free),
        critical_percent=values.get("critical_percent", base_policy.critical_percent),
        critical_interval_s=values.get("critical_interval_s", base_policy.critical_interval_s),
        docker_root=values.get("docker_root", base_policy.docker_root),
    )
    aliases = tuple(alias.strip() for alias in values.get("aliases", ()))
    return Target(name=name, ssh=ssh, policy=policy, aliases=aliases)


def _shared_names(targets: list[Target]) -> list[str]:
    """An alias that is another target's name or alias would let one alert prune both."""
    problems: list[str] = []
    owner: dict[str, str] = {}
    for target in targets:
        name = normalize_host(target.name)
        own = {name, *(normalize_host(a) for a in target.aliases)}
        for known in sorted(own):
            if known in owner and owner[known] != target.name:
                key = "" if known == name else ".aliases"
                problems.append(
                    f"targets.{target.name}{key}: {known!r} is also a name or alias of "
                    f"targets.{owner[known]}"
                )
            owner.setdefault(known, target.name)
    return problems
