"""Property: over any fleet and any sequence of alerts, each alert touches exactly the targets
it names, no target is pruned again within its interval (nor retried before its retry delay,
nor started over a live lease), and a named target that is due starts (safety and liveness).
A critical alert (our watchdog at or above the target's critical percent) may start inside
the interval, but never within `critical_interval_s` of the last start.

The fleet is random, as a targets file allows it (names, hosts and aliases unique across
targets, so an alert names one target at most): targets on addresses of their own, aliases
(an address among them, another target's never), policies with different intervals, retry
delays and leases. Alerts name hosts as senders spell them (case, `:port`, `[v6]:port`,
blanks) or name hosts that are no target (near misses of a known name among them);
Alertmanager groups mix firing and resolved alerts and host labels in any order. Runs are
claimed by the real service and store and never run: a `launch` that records stands in for
the thread, and the test finishes runs (ok or failed) through the store, or lets their
worker die. Runs on every store backend.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.harness import failed_outcome, succeeded_outcome
from webhook.core.decision import Answer, Result
from webhook.core.targets import Fleet, PrunePolicy, SSHEndpoint, Target, parse_targets
from webhook.core.triggers import Trigger, read_alertmanager, read_cron, read_watchdog
from webhook.service import PruneService
from webhook.store import Store, TargetRecord

# interval, retry delay, lease (timeout + grace): the second retries after its interval
POLICIES = (
    PrunePolicy(interval_s=3600, retry_after_s=600, timeout_s=120, lease_grace_s=60),
    PrunePolicy(interval_s=900, retry_after_s=1200, timeout_s=30, lease_grace_s=30),
)
# one database for all examples (a backend's server is slow to make): fresh names each
ONE_DATABASE = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
ADDRESSES = ("127.0.0.1", "127.0.0.2", "localhost", "::1")
# aliases are the fleet's own (no two targets share one); 127.0.0.2 is an alias only when no
# other target's address is 127.0.0.2
ALIASES = ("ci-a.fleet.test", "CI-B.Fleet.Test", "runner-c", "127.0.1.1", "127.0.0.2")
HOST_LABELS = ("host", "nodename", "instance")

EDGES = sorted(
    {0.0}
    | {
        edge + delta
        for policy in POLICIES
        for edge in (
            policy.lease_s,
            policy.retry_after_s,
            policy.interval_s,
            policy.critical_interval_s,
        )
        for delta in (-0.5, 0.0)
    }
)
# half seconds add up exactly in binary, so the checks below compare exact times
gaps = st.one_of(
    st.just(0.0),
    st.sampled_from(EDGES),
    st.integers(min_value=0, max_value=600).map(lambda n: n / 2),
    st.integers(min_value=0, max_value=8000).map(lambda n: n / 2),
    # to a target's own edge: just before, or at, the time its next run may start
    st.tuples(st.integers(0, 9), st.sampled_from([-0.5, 0.0])),
)


@dataclass(frozen=True)
class Known:
    """A host value for one of a target's identities (name, address or alias), spelled `how`."""

    target: int
    identity: int
    how: str
    port: int = 9100


@dataclass(frozen=True)
class Unknown:
    """A host value that is no target: a near miss of a known identity, or a stranger."""

    target: int
    identity: int
    how: str
    stranger: str = ""


SPELLINGS = ("exact", "upper", "title", "port", "blanks")
NEAR_MISSES = ("suffix", "prefix", "shorter", "empty_port", "word_port", "arabic_port", "two_ports")

hosts = st.one_of(
    st.builds(Known, st.integers(0, 9), st.integers(0, 9), st.sampled_from(SPELLINGS),
              st.integers(1, 65535)),
    st.builds(Unknown, st.integers(0, 9), st.integers(0, 9),
              st.sampled_from((*NEAR_MISSES, "stranger")),
              st.text("abcxyz019.-:", min_size=1, max_size=12)),
)  # fmt: skip


@dataclass(frozen=True)
class Alert:
    """Alertmanager's labels of one alert: (label, host) pairs, in the order sent."""

    labels: tuple[tuple[str, Known | Unknown | None], ...]
    firing: bool = True


alerts = st.builds(
    Alert,
    st.lists(
        st.tuples(st.sampled_from(HOST_LABELS), st.one_of(st.none(), hosts)),
        max_size=3,
        unique_by=lambda pair: pair[0],
    ).map(tuple),
    st.booleans(),
)
triggers = st.one_of(
    st.tuples(st.just("watchdog"), hosts, st.booleans()),
    st.tuples(st.just("alertmanager"), st.lists(alerts, min_size=1, max_size=4), st.booleans()),
    st.tuples(st.just("cron"), st.lists(st.integers(0, 9), max_size=3), st.just(True)),
)
steps = st.lists(
    st.tuples(
        gaps,
        st.one_of(
            triggers,
            triggers,
            triggers,
            st.tuples(st.sampled_from(["finish_ok", "finish_failed", "die", "stale_finish"]),
                      st.integers(0, 9)),
        ),
    ),
    min_size=8,
    max_size=40,
)  # fmt: skip


@dataclass(frozen=True)
class TargetSpec:
    address: str
    aliases: tuple[str, ...]
    policy: int


@st.composite
def fleets(draw: st.DrawFn) -> tuple[TargetSpec, ...]:
    size = draw(st.integers(1, 4))
    addresses = draw(st.permutations(ADDRESSES))[:size]
    owners = [draw(st.one_of(st.none(), st.integers(0, size - 1))) for _ in ALIASES]
    # an alias that is a target's address may only be that target's own
    owners = [
        addresses.index(alias) if owner is not None and alias in addresses else owner
        for alias, owner in zip(ALIASES, owners, strict=True)
    ]
    specs = tuple(
        TargetSpec(
            addresses[index],
            tuple(alias for alias, owner in zip(ALIASES, owners, strict=True) if owner == index),
            draw(st.integers(0, len(POLICIES) - 1)),
        )
        for index in range(size)
    )
    tables = {f"t{i}": {"host": t.address, "aliases": list(t.aliases)} for i, t in enumerate(specs)}
    parse_targets({"targets": tables}, "fleet", {})  # a fleet a targets file may name
    return specs


@dataclass
class Start:
    run_id: int
    at: float
    ended: float | None = None
    ok: bool | None = None
    critical: bool = False  # started by a critical alert


@dataclass
class Model:
    """What the policy lets happen to one target, from what this test did to it."""

    target: Target
    starts: list[Start] = field(default_factory=list)
    in_flight: Start | None = None  # started, neither finished nor its worker dead

    @property
    def identities(self) -> tuple[str, ...]:
        return (self.target.name, self.target.ssh.address, *self.target.aliases)

    def next_start(self, critical: bool = False) -> float | None:
        """The earliest time the policy lets the next run start; None: at any time. A
        critical alert may come sooner: `critical_interval_s` after the last start."""
        if not self.starts:
            return None
        last, policy = self.starts[-1], self.target.policy
        if last.ended is None:  # in flight, or its worker died: its lease must run out
            return last.at + policy.lease_s
        if last.ok:
            earliest = last.at + policy.interval_s
        else:
            earliest = min(last.at + policy.interval_s, last.ended + policy.retry_after_s)
        return min(earliest, last.at + policy.critical_interval_s) if critical else earliest

    def due(self, now: float, critical: bool = False) -> bool:
        earliest = self.next_start(critical)
        return earliest is None or now >= earliest

    def lease_live(self, now: float) -> bool:
        return bool(self.starts) and self.starts[-1].ended is None and not self.due(now)


class Recording(PruneService):
    """The real service, whose claimed runs are recorded instead of run."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.launched: list[tuple[str, int]] = []
        self.runs = self  # type: ignore[assignment]

    def submit(self, target: Target, run_id: int, orders: object) -> None:
        self.launched.append((target.name, run_id))


def unreachable(target: Target, command: str):
    raise AssertionError("runs are never run here")


class World:
    def __init__(self, store: Store, specs: tuple[TargetSpec, ...]):
        self.now = 0.0
        self.store = store
        suffix = uuid.uuid4().hex[:10]
        self.models = [
            Model(
                Target(
                    f"t{index}-{suffix}",
                    SSHEndpoint(spec.address),
                    POLICIES[spec.policy],
                    spec.aliases,
                )
            )
            for index, spec in enumerate(specs)
        ]
        self.service = Recording(
            Fleet(tuple(m.target for m in self.models)),
            store,
            unreachable,
            routes_by_host=True,
            clock=lambda: self.now,
        )

    def model(self, index: int) -> Model:
        return self.models[index % len(self.models)]

    def identity(self, host: Known | Unknown) -> str:
        identities = self.model(host.target).identities
        return identities[host.identity % len(identities)]

    def spell(self, host: Known | Unknown | None) -> str | None:
        """The host value a sender puts in the payload."""
        if host is None:
            return None
        base = self.identity(host)
        v6 = ":" in base
        port = f"[{base}]" if v6 else base
        match host:
            case Known(how="exact"):
                return base
            case Known(how="upper"):
                return base.upper()
            case Known(how="title"):
                return base.title()
            case Known(how="port", port=number):
                return f"{port}:{number}"
            case Known(how="blanks"):
                return f" {base}\t"
            case Unknown(how="suffix"):
                return base + "x"
            case Unknown(how="prefix"):
                return "x" + base
            case Unknown(how="shorter"):
                return base[:-1]
            case Unknown(how="empty_port"):
                return f"{port}:"
            case Unknown(how="word_port"):
                return f"{port}:ssh"
            case Unknown(how="arabic_port"):
                return f"{port}:\u0662\u0662"  # digits, but not a port
            case Unknown(how="two_ports"):
                return f"{base}:9100:22"  # for ::1, the address ::1:9100:22
            case Unknown(stranger=text):
                return f"zz-{text}"
        raise AssertionError(host)

    def routed_to(self, host: Known | Unknown) -> set[str]:
        """The oracle: a known spelling concerns every target that has that identity."""
        if isinstance(host, Unknown):
            return set()
        wanted = self.identity(host).lower()
        return {m.target.name for m in self.models if wanted in {i.lower() for i in m.identities}}

    def critical(self, trigger: tuple, model: Model) -> bool:
        """Whether the trigger is critical for the target: our watchdog's alerts here are at
        97%; the Alertmanager alerts carry no severity."""
        return trigger[0] == "watchdog" and model.target.policy.critical_percent <= 97.0

    def read(self, step: tuple) -> tuple[Trigger, set[str], int]:
        """The trigger a hook would read from the payload; the targets it names; and how many
        distinct host values among its firing alerts are no target."""
        kind, what, firing = step
        if kind == "cron":
            names = [self.model(index).target.name for index in what]
            every = {m.target.name for m in self.models}
            return read_cron({}, names), set(names) or every, 0
        if kind == "watchdog":
            value = self.spell(what)
            assert value is not None
            alert = {"host": value, "mount": "/", "used_percent": 97.0}
            alert["status"] = "firing" if firing else "resolved"
            named = self.routed_to(what)
            return read_watchdog(alert), named, int(firing and not named)
        payload_alerts = []
        named: set[str] = set()
        unknown: set[str] = set()
        for alert in what:
            labels = {label: self.spell(host) for label, host in alert.labels}
            sent = {label: value for label, value in labels.items() if value is not None}
            payload_alerts.append(
                {"status": "firing" if alert.firing else "resolved", "labels": sent}
            )
            # the host is the first of PRUNEHOOK_HOST_LABELS the alert carries, not blank
            routed = [
                host
                for label in HOST_LABELS
                for each, host in alert.labels
                if each == label and host is not None and (self.spell(host) or "").strip()
            ]
            if alert.firing and firing and routed:
                found = self.routed_to(routed[0])
                named |= found
                if not found:
                    unknown.add(self.spell(routed[0]) or "")
        payload = {
            "status": "firing" if firing else "resolved",
            "receiver": "prunehook",
            "alerts": payload_alerts,
        }
        trigger = read_alertmanager(payload)
        if not trigger.wants_prune:
            return trigger, named, 0
        return trigger, named, len(unknown)

    def records(self) -> dict[str, TargetRecord | None]:
        return {m.target.name: self.store.target_record(m.target.name) for m in self.models}

    def trigger(self, step: tuple) -> None:
        trigger, named, unknown = self.read(step)
        before = self.records()
        launched = len(self.service.launched)
        outcome = self.service.handle(trigger)
        note(f"at {self.now}: {trigger.source} for hosts {trigger.hosts} names {trigger.names}")
        after = self.records()
        items = [r for r in outcome.results if r.target is not None]
        launches = self.service.launched[launched:]

        if not trigger.wants_prune:
            assert after == before, "an alert that asks for nothing changed a target"
            assert not launches
            assert {r.answer for r in outcome.results} <= {Answer.IGNORED, Answer.UNKNOWN_TARGET}
            assert {r.target for r in items} <= named
            return
        assert sorted(r.target for r in items) == sorted(named), "touched what it does not name"
        unknown_items = [r for r in outcome.results if r.answer == Answer.UNKNOWN_TARGET]
        assert len(unknown_items) == min(unknown, 1)
        assert sum(r.unknown_hosts for r in unknown_items) == unknown
        started = {r.target: r.run_id for r in items if r.answer == Answer.STARTED}
        assert sorted(launches) == sorted(started.items()), "launched other than what started"
        for model in self.models:
            name = model.target.name
            if name not in named:
                assert after[name] == before[name], f"an alert not naming {name} changed it"
                continue
            (result,) = [r for r in items if r.target == name]
            critical = self.critical(step, model)
            due = model.due(self.now, critical)
            assert (result.answer == Answer.STARTED) == due, (name, self.now, model.starts)
            if not due:
                live = model.lease_live(self.now)
                assert result.answer == (Answer.BUSY if live else Answer.SKIPPED)
                assert after[name] == before[name]
                continue
            run_id = started[name]
            record = after[name]
            assert record is not None and record.inflight_run_id == run_id
            start = Start(run_id, self.now, critical=critical)
            model.starts.append(start)
            model.in_flight = start

    def finish(self, index: int, ok: bool) -> None:
        model = self.model(index)
        start = model.in_flight
        if start is None:
            return
        outcome = succeeded_outcome(None) if ok else failed_outcome()
        assert self.store.finish(model.target.name, start.run_id, outcome, self.now)
        start.ended, start.ok = self.now, ok
        model.in_flight = None

    def die(self, index: int) -> None:
        self.model(index).in_flight = None  # its worker is gone: the run never finishes

    def stale_finish(self, index: int) -> None:
        """A run given up as lost ends after all (a hung worker wakes): history only."""
        model = self.model(index)
        superseded = [s for s in model.starts[:-1] if s.ended is None]
        if not superseded:
            return
        name = model.target.name
        before = self.store.target_record(name)
        assert not self.store.finish(name, superseded[0].run_id, succeeded_outcome(), self.now)
        assert self.store.target_record(name) == before
        run = self.store.run(superseded[0].run_id)
        assert run is not None and run.result == Result.OK


def check_intervals(model: Model) -> None:
    """Safety, restated from the starts alone: how far apart any two runs of a target are."""
    policy = model.target.policy
    for previous, following in itertools.pairwise(model.starts):
        gap = following.at - previous.at
        if previous.ended is None:
            assert gap >= policy.lease_s, "a run started while another's lease was live"
        elif following.critical:
            assert gap >= min(
                policy.critical_interval_s,
                policy.interval_s
                if previous.ok
                else min(policy.interval_s, previous.ended - previous.at + policy.retry_after_s),
            ), "a critical alert started a run within critical_interval_s"
        elif previous.ok:
            assert gap >= policy.interval_s, "two runs started within the interval"
        else:
            earliest = min(previous.at + policy.interval_s, previous.ended + policy.retry_after_s)
            assert following.at >= earliest, "a failed run was retried too soon"


@settings(max_examples=200, deadline=None, suppress_health_check=ONE_DATABASE)
@given(specs=fleets(), sequence=steps)
def test_alerts_touch_only_the_targets_they_name_and_start_every_due_one(store, specs, sequence):
    play(World(store, specs), sequence)


def play(world: World, sequence) -> None:
    for gap, step in sequence:
        if isinstance(gap, tuple):
            index, delta = gap
            edge = world.model(index).next_start()
            if edge is not None:
                world.now = max(world.now, edge + delta)
        else:
            world.now += gap
        kind = step[0]
        if kind in ("watchdog", "alertmanager", "cron"):
            world.trigger(step)
        elif kind == "die":
            world.die(step[1])
        elif kind == "stale_finish":
            world.stale_finish(step[1])
        else:
            world.finish(step[1], kind == "finish_ok")

    for model in world.models:
        check_intervals(model)
        # the store's history holds exactly the runs the service started
        history = world.store.recent_runs(model.target.name, 100)
        assert [run.id for run in reversed(history)] == [s.run_id for s in model.starts]
