"""The fleet: each build host is a `Target`, with its SSH endpoint and its prune policy.

Pure: no I/O. `PolicySchema` declares every per-target key once: a targets
file is parsed through it from the dict `tomllib` made of it (`parse_targets`),
and the configuration reads the single env target's `PRUNEHOOK_*` variables
through the same fields. How an alert's host value finds its targets
(`Fleet.route`) lives here too, so that a name from a payload can only
ever select a configured target, never be connected to.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields
from marshmallow.validate import Length, Range

from webhook.core.disk import FreeGoal, Goals, parse_configured_size, parse_free_goal
from webhook.core.duration import normalize_until

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# a whole name: `$` would also match before a trailing newline (a quoted TOML key may end in one)
_NAME = re.compile(NAME_PATTERN.removesuffix("$") + r"\Z")
NAME_MAX = 63
NAME_RULE = f"a target name must match {NAME_PATTERN}, at most {NAME_MAX} characters"
YEAR_S = 365 * 86400
PORTS = Range(1, 65535)
# an absolute path of plain characters: it reaches df's command line (and the host's guard,
# which checks it with the same pattern), so nothing a shell or df would read as more
DOCKER_ROOT = re.compile(r"^/[A-Za-z0-9._/+-]{0,255}\Z")
DOCKER_ROOT_RULE = "an absolute path of letters, digits and ._+-/ (no ..), such as /var/lib/docker"


def is_name(name: str) -> bool:
    """Whether `name` may name a target (NAME_RULE)."""
    return bool(_NAME.match(name)) and len(name) <= NAME_MAX


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
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout_s: float = 10.0

    def __str__(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def known_hosts_path(self) -> Path:
        # os.path: `~nosuchuser/...` stays as written (and is refused as unreadable),
        # where Path.expanduser raises
        return Path(os.path.expanduser(self.known_hosts))


@dataclass(frozen=True)
class PrunePolicy:
    """What is pruned on a target and how often (the keys are PolicySchema's)."""

    until: str = "24h"
    prune_all: bool = False
    interval_s: float = 21600
    retry_after_s: float = 600
    timeout_s: float = 120
    # how long past the prune timeout an in-flight run's lease holds off others
    lease_grace_s: float = 60
    max_cache: int | None = None
    min_free: FreeGoal | None = None
    critical_percent: float = 95
    critical_interval_s: float = 900
    docker_root: str = "/var/lib/docker"
    # DESIGN.md, "Watching and forecasting": 0 watches nothing
    watch_interval_s: float = 0
    forecast_window_s: float = 21600
    forecast_horizon_s: float = 14400

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
    def routes(self) -> frozenset[str]:
        """Every host value an alert may use for this target, normalized (made once: each
        watchdog or Alertmanager trigger asks it of every target it concerns)."""
        return frozenset(normalize_host(n) for n in (self.name, self.ssh.address, *self.aliases))


def normalize_host(value: str) -> str:
    """`Build-1.Example:9100` -> `build-1.example`; `[::1]:22` -> `::1`; `::1` stays. A value
    not in ASCII stays as it is, matching no target (every target's is ASCII): lowercased or
    stripped, it could become another host's (the Kelvin sign K lowercases to k)."""
    if not value.isascii():
        return value
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

    @cached_property
    def _index(self) -> dict[str, tuple[Target, ...]]:
        index: dict[str, list[Target]] = {}
        for target in self.targets:
            for known in target.routes:
                index.setdefault(known, []).append(target)
        return {k: tuple(v) for k, v in index.items()}

    @cached_property
    def _by_name(self) -> dict[str, Target]:
        return {t.name: t for t in self.targets}

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

    def known(self, shown: int = 20) -> str:
        """The target names, for a message about a name that is none of them."""
        names = ", ".join(self.names[:shown]) or "none"
        return f"{names} and {len(self) - shown} more" if len(self) > shown else names

    def route(self, host_value: str) -> tuple[Target, ...]:
        """The targets whose name, host or alias is `host_value` (case and :port aside)."""
        return self._index.get(normalize_host(host_value), ())


class TargetsFileError(ValueError):
    """A targets file that cannot be used; `problems` name the file, the target and the key."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


_TABLE_LINE = re.compile(r"\s*\[\[?([^\]]*)\]")
_KEY_LINE = re.compile(r"\s*([\w.\-\"' ]+?)\s*=")
_TOML_ERROR_LINE = re.compile(r"\(at line (\d+), column \d+\)$")


def _place(text: str, line: int) -> str:
    """The table and key of line `line` (1-based) of a TOML text, `targets.build-2.port: `,
    to begin a problem tomllib reports by line alone; "" when it cannot tell."""
    lines = text.split("\n")
    table = ""
    for content in lines[: max(line, 0)]:
        header = _TABLE_LINE.match(content)
        if header:
            table = re.sub(r"[\"' ]", "", header.group(1))
    current = lines[line - 1] if 0 < line <= len(lines) else ""
    key = _KEY_LINE.match(current) if not _TABLE_LINE.match(current) else None
    place = ".".join(filter(None, (table, re.sub(r"[\"' ]", "", key.group(1)) if key else "")))
    return f"{place}: " if place else ""


def read_document(raw: bytes, source: str) -> dict[str, Any]:
    """A targets file's bytes as tomllib reads them: UTF-8 text in TOML. TargetsFileError
    says where they are neither: the table and key, and the line."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        where = _place(raw.decode(errors="replace"), line)
        problem = f"not UTF-8 text, as TOML must be: byte 0x{raw[error.start]:02x} at line {line}"
        raise TargetsFileError(source, [where + problem]) from error
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = _TOML_ERROR_LINE.search(str(error))
        where = _place(text, int(found.group(1))) if found else ""
        raise TargetsFileError(source, [f"{where}not valid TOML: {error}"]) from error


class Parsed(fields.Field[Any]):
    """A value one of the core's parsers reads; its ValueError is the field's error."""

    def __init__(self, parse: Callable[[Any], Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.parse = parse

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        try:
            return self.parse(value)
        except ValueError as error:
            raise ValidationError(str(error)) from error


class Number(fields.Float):
    """A finite number, whole when it can be (`3600`, as /status and the CLI show it)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> float | int:
        number = super()._deserialize(value, attr, data, **kwargs)
        return int(number) if number.is_integer() else number


def about(description: str, variable: str = "", *, fallback: bool = False) -> dict[str, Any]:
    """A key's metadata: its help text, its variable when not PRUNEHOOK_ + the key upper case,
    and `fallback`: a bad value in the environment warns and takes the default (DESIGN.md)."""
    return {"description": description, "variable": variable, "fallback": fallback}


def seconds(default: float, most: float | None, description: str, zero: bool = False) -> Number:
    """A time in seconds, more than zero (or zero too, where 0 means off); with a default
    that is safe (`fallback`)."""
    return Number(
        load_default=default,
        validate=Range(0, most, min_inclusive=zero),
        metadata=about(description, fallback=True),
    )


def _until(value: object) -> str:
    if not isinstance(value, str):  # a TOML number: `until = 24`
        raise ValidationError(
            f'{value!r} is not a duration: write it in quotes with a unit, e.g. "24h"'
        )
    return normalize_until(value)


def _docker_root(value: str) -> None:
    if not is_docker_root(value):
        raise ValidationError(DOCKER_ROOT_RULE)


class PolicySchema(Schema):
    """Every per-target key, its bound, default and meaning: a targets file's [defaults] and
    [targets.NAME] set them, and the environment the single env target's (PRUNEHOOK_ + the
    key upper case, or the key's `variable`). Loaded by make_target's names (`prune_all`)."""

    class Meta:
        unknown = RAISE

    user = fields.String(
        load_default=getpass.getuser,
        validate=Length(1, 64),
        metadata=about("who logs in; default: the user running prunehook", "SSH_USER"),
    )
    port = fields.Integer(
        strict=True,
        load_default=SSHEndpoint.port,
        validate=PORTS,
        metadata=about("the build host's SSH port", "SSH_PORT"),
    )
    key_file = fields.String(
        load_default=SSHEndpoint.key_file,
        validate=Length(1, 4096),
        metadata=about(
            "private key file; PRUNEHOOK_SSH_KEY may hold the key instead", "SSH_KEY_FILE"
        ),
    )
    known_hosts = fields.String(
        load_default=SSHEndpoint.known_hosts,
        validate=Length(1, 4096),
        metadata=about("the host key must be here; unknown or changed: refused", "SSH_KNOWN_HOSTS"),
    )
    interval_s = seconds(PrunePolicy.interval_s, 10 * YEAR_S, "at most one prune per interval")
    retry_after_s = seconds(PrunePolicy.retry_after_s, YEAR_S, "next try this soon after a failure")
    until = Parsed(
        _until,
        load_default=PrunePolicy.until,
        validate=Length(1, 64),
        metadata=about("age filter: a Go duration (90m, 24h); days become hours", fallback=True),
    )
    prune_all = fields.Boolean(
        data_key="all",
        load_default=PrunePolicy.prune_all,
        metadata=about("adds -a, always with the age filter"),
    )
    timeout_s = seconds(PrunePolicy.timeout_s, 86400, "limit on one remote prune")
    max_cache = Parsed(
        parse_configured_size,
        load_default=None,
        metadata=about("largest build cache to keep: a size (10GB, 10GiB, bytes); none: no bound"),
    )
    min_free = Parsed(
        parse_free_goal,
        load_default=None,
        metadata=about(
            "free space to reach: a size or a percentage (15%) of the disk; none: no goal"
        ),
    )
    docker_root = fields.String(
        load_default=PrunePolicy.docker_root,
        validate=_docker_root,
        metadata=about(
            f"where Docker keeps its data on the host; df measures its disk: {DOCKER_ROOT_RULE}"
        ),
    )
    critical_percent = Number(
        load_default=PrunePolicy.critical_percent,
        validate=Range(0, 100, min_inclusive=False),
        metadata=about(
            "an alert at this used percent may prune inside the interval", fallback=True
        ),
    )
    critical_interval_s = seconds(
        PrunePolicy.critical_interval_s,
        10 * YEAR_S,
        "a critical prune waits this long after the last",
    )
    watch_interval_s = seconds(
        PrunePolicy.watch_interval_s,
        YEAR_S,
        "a cron ping measures the host when its last measure is this old; 0: never",
        zero=True,
    )
    forecast_window_s = seconds(
        PrunePolicy.forecast_window_s, 30 * 86400, "the fill rate is read over this window"
    )
    forecast_horizon_s = seconds(
        PrunePolicy.forecast_horizon_s,
        30 * 86400,
        "a goal forecast to be missed this soon is pruned for now",
    )


def _ascii(value: str) -> None:
    """A host or alias in ASCII: another script's look-alike (the Kelvin sign K lowercases
    to k) could otherwise route an alert to another host."""
    if not value.isascii():
        other = next(c for c in value if not c.isascii())
        raise ValidationError(
            f"must be ASCII (an international name in its xn-- form): {other!r} "
            f"(U+{ord(other):04X}) is not"
        )


class TargetSchema(PolicySchema):
    host = fields.String(
        required=True,
        validate=[Length(min=1, max=253), _ascii],
        metadata=about("what SSH connects to; an alert naming it prunes this target"),
    )
    aliases = fields.List(
        fields.String(validate=[Length(min=1, max=253), _ascii]),
        load_default=list,
        metadata=about("other names alerts use for the host (an IP, a node name)"),
    )


_POLICY_KEYS = tuple(PolicySchema().fields)
_SSH_KEYS = frozenset(f.name for f in dataclasses.fields(SSHEndpoint))


def _messages(prefix: str, errors: Mapping[str, Any]) -> Iterable[str]:
    for key, messages in sorted(errors.items()):
        if isinstance(messages, Mapping):
            yield from _messages(f"{prefix}.{key}", messages)
        else:
            listed = messages if isinstance(messages, list) else [messages]
            yield f"{prefix}.{key}: {'; '.join(str(m) for m in listed)}"


def make_target(
    name: str, address: str, values: Mapping[str, Any], aliases: Iterable[str] = ()
) -> Target:
    """A target from SSHEndpoint's and PrunePolicy's values by their names (PolicySchema's)."""
    ssh = SSHEndpoint(address.strip(), **{k: v for k, v in values.items() if k in _SSH_KEYS})
    return Target(name, ssh, policy_of(values), tuple(alias.strip() for alias in aliases))


def policy_of(values: Mapping[str, Any]) -> PrunePolicy:
    """The PrunePolicy of make_target's values (the SSH ones left aside)."""
    return PrunePolicy(**{k: v for k, v in values.items() if k not in _SSH_KEYS})


def parse_targets(
    document: Mapping[str, Any], source: str, base: Mapping[str, Any]
) -> tuple[Target, ...]:
    """Targets from a parsed targets file; `base` (the environment's values, by make_target's
    names) fills what a target and [defaults] leave out.

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
            defaults = PolicySchema().load(raw_defaults, partial=_POLICY_KEYS)
        except ValidationError as error:
            problems += _messages("defaults", error.normalized_messages())
    tables = document.get("targets", {})
    if not isinstance(tables, Mapping) or not tables:
        problems.append("targets: no [targets.NAME] table: name at least one build host")
        tables = {}
    targets: list[Target] = []
    for name, table in tables.items():
        where = f"targets.{name}"
        if not is_name(name):
            problems.append(f"{where}: {NAME_RULE}")
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        try:
            own = {**defaults, **TargetSchema().load(table, partial=_POLICY_KEYS)}
        except ValidationError as error:
            problems += _messages(where, error.normalized_messages())
            continue
        # a key file named in the file replaces the key text of the environment
        values = {**base, **({"key": ""} if "key_file" in own else {}), **own}
        targets.append(make_target(name, values.pop("host"), values, values.pop("aliases")))
    problems += _shared_names(targets)
    if problems:
        raise TargetsFileError(source, problems)
    return tuple(targets)


def _shared_names(targets: list[Target]) -> list[str]:
    """A name, host or alias that is another target's, compared as alerts are routed
    (lowercased, without a :port), would let one alert prune both."""
    problems: list[str] = []
    owner: dict[str, str] = {}
    for target in targets:
        own = [("", target.name), (".host", target.ssh.address)]
        for key, value in own + [(".aliases", alias) for alias in target.aliases]:
            known = normalize_host(value)
            first = owner.setdefault(known, target.name)
            if first != target.name:
                problems.append(
                    f"targets.{target.name}{key}: {known!r} is also a name, host or alias of "
                    f"targets.{first}"
                )
    return problems
