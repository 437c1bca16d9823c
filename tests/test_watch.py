"""The watch through the service (DESIGN.md, "Watching and forecasting"): a cron ping
measures each watched target whose last measure is old enough, due or not; a sample that
misses a goal, or a forecast crossing within the horizon, starts a run bounded as a
critical start; measuring is never a prune. The host is numbers (tests/disk_host.py);
time is the injected clock."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import pytest

from tests.conftest import Clock
from tests.disk_host import DF, GB, DiskHost
from webhook.core.decision import Result
from webhook.core.disk import FreeGoal, Goals
from webhook.core.forecast import Act, SampleKind
from webhook.core.outcome import Execution
from webhook.core.targets import Fleet, PrunePolicy, SSHEndpoint, Target
from webhook.core.triggers import Source, Trigger, read_cron
from webhook.remote.session import CommandSession
from webhook.runs import RunSteps, run_stages
from webhook.service import PruneService
from webhook.store.sqlite import SQLiteStore
from webhook.watch import Measurement, Watched

PROBES = [DF, "docker system df"]
# what a probe answers when it fails and prints nothing
PROBE_FAILED = Execution(1, "", "", 0.01)
PING = Trigger(Source.CRON, True, "cron ping")
MINUTE = 60.0


def watched(**policy) -> Target:
    values = {"watch_interval_s": MINUTE, "critical_interval_s": 900.0} | policy
    return Target("build-1", SSHEndpoint("127.0.0.1"), PrunePolicy(**values))


class Watching:
    """A service over one DiskHost, its store, its clock and what its measures told."""

    def __init__(self, tmp_path, host: DiskHost, target: Target, clock: Clock | None = None):
        self.host, self.clock = host, clock or Clock()
        self.told: list[Watched] = []
        self.args = tmp_path, host, target
        self.store = SQLiteStore(tmp_path / "state.sqlite3")
        self.service = PruneService(Fleet((target,)), self.store, host, clock=self.clock)
        self.service.listeners.measured.append(self.told.append)

    def replica(self) -> Watching:
        """Another worker or replica: the same host, state file and clock."""
        return Watching(*self.args, clock=self.clock)

    def ping(self, after_s: float = 0.0) -> list[str]:
        """A cron ping `after_s` from the last; the commands it sent to the host."""
        self.clock.advance(after_s)
        sent = len(self.host.commands)
        self.service.handle(PING)
        self.service.join_all(30)
        return self.host.commands[sent:]

    def runs(self) -> list[tuple[str, str]]:
        return [(run.trigger, run.result) for run in reversed(self.store.recent_runs("build-1"))]


@pytest.fixture
def make_watching(tmp_path):
    def make(host: DiskHost | None = None, **policy) -> Watching:
        return Watching(tmp_path, host or DiskHost(), watched(**policy))

    return make


def test_a_ping_measures_a_watched_target_inside_its_interval_and_prunes_nothing(make_watching):
    watching = make_watching()
    assert "docker builder prune -f --filter until=24h" in watching.ping()  # the first run
    state = watching.store.read_state("build-1")
    assert watching.ping(MINUTE) == PROBES
    assert watching.store.read_state("build-1") == state  # no prune for the interval
    assert watching.runs() == [("cron", "ok")]
    assert [told.result for told in watching.told] == [Measurement.OK]
    record = watching.store.target_record("build-1")
    assert record is not None and record.last_measured_ts == watching.clock.now


def test_a_measure_younger_than_watch_interval_s_is_not_repeated(make_watching):
    watching = make_watching()
    watching.ping()
    assert watching.ping(MINUTE) == PROBES
    assert watching.ping(MINUTE / 2) == []
    assert watching.ping(MINUTE / 2) == PROBES


AGE_PRUNE = "docker builder prune -f --filter until=24h"
SIX_HOURS = 21600.0  # interval_s: the next cron run


class DfFailsOncePruned(DiskHost):
    """A host whose df fails once a prune ran (its disk went away, say)."""

    def __call__(self, target: Target, command: str) -> Execution:
        if command.startswith("df ") and any("prune" in sent for sent in self.commands):
            self.commands.append(command)
            return Execution(1, "", "df: /var/lib/docker: Input/output error", 0.01)
        return super().__call__(target, command)


def test_a_clock_stepped_back_does_not_stop_the_watch_until_it_catches_up(make_watching):
    watching = make_watching()
    watching.ping()
    assert watching.ping(MINUTE) == PROBES
    assert watching.ping(-3600) == PROBES  # the last measure is an hour ahead: measured now
    assert watching.ping(MINUTE / 2) == []  # and then every watch_interval_s again
    assert watching.ping(MINUTE) == PROBES


def test_a_run_that_read_the_cache_but_not_the_disk_after_its_prune_shows_the_cache_after(
    make_watching,
):
    watching = make_watching(DfFailsOncePruned(young=5 * GB, old=25 * GB))
    assert AGE_PRUNE in watching.ping()
    record = watching.store.target_record("build-1")
    assert record is not None
    assert record.last_cache == 5 * GB  # what the run left, not the 30 GB before its prune


def test_a_run_leaves_the_measure_another_replica_holds_held(make_watching, tmp_path):
    watching = make_watching()
    watching.ping()
    watching.clock.advance(SIX_HOURS)
    replica = SQLiteStore(tmp_path / "state.sqlite3")
    assert replica.claim_measures({"build-1": MINUTE}, watching.clock.now, 90) == ["build-1"]
    assert AGE_PRUNE in watching.ping()  # a run, and no measure: the replica is measuring
    assert watching.runs() == [("cron", "ok"), ("cron", "ok")]
    # the run measured the host a minute ago, but the replica's measure is still under way
    assert replica.claim_measures({"build-1": MINUTE}, watching.clock.now + 61, 90) == []


def test_with_buildx_known_the_cache_is_measured_with_buildx_du_by_runs_and_watch(make_watching):
    watching = make_watching(DiskHost(buildx=True))  # 30 GB of cache, 2 GB more shared
    # the first run learns the versions: a run's probes are bounded (MAX_PROBES) as if it
    # measured with docker system df, so it does, all through
    assert watching.ping() == [
        *PROBES,
        "docker version",
        "docker buildx version",
        AGE_PRUNE,
        *PROBES,
    ]
    assert watching.ping(MINUTE) == [DF, "docker buildx du"]
    assert watching.ping(SIX_HOURS) == [DF, "docker buildx du", AGE_PRUNE, DF, "docker buildx du"]
    run = watching.store.recent_runs("build-1")[0]
    assert (run.cache_before, run.cache_after, run.notes) == (30 * GB, 30 * GB, ())
    assert watching.told[0].sample.cache == 30 * GB  # Private, as docker system df counts


def test_without_buildx_the_cache_is_measured_with_docker_system_df(make_watching):
    watching = make_watching(DiskHost(buildx=False))
    watching.ping()
    assert watching.ping(MINUTE) == PROBES
    assert watching.ping(SIX_HOURS) == [*PROBES, AGE_PRUNE, *PROBES]
    assert "docker buildx du" not in watching.host.commands


@pytest.mark.parametrize(
    "failed",
    [
        Execution(1, "", 'ERROR: no builder "remote" found\n', 0.01),
        Execution(0, "ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n", "", 0.01),  # no summary
    ],
)
def test_a_buildx_du_that_fails_falls_back_to_docker_system_df_in_the_same_measure(
    make_watching, failed
):
    host = DiskHost(buildx=True)
    watching = make_watching(host)
    watching.ping()
    host.answers["docker buildx du"] = failed
    assert watching.ping(MINUTE) == [DF, "docker buildx du", "docker system df"]
    assert watching.told[-1].sample.cache == 30 * GB
    # a run tries it once, then measures with docker system df at once
    assert watching.ping(SIX_HOURS) == [
        DF,
        "docker buildx du",
        "docker system df",
        AGE_PRUNE,
        *PROBES,
    ]
    run = watching.store.recent_runs("build-1")[0]
    assert (run.cache_before, run.cache_after) == (30 * GB, 30 * GB)
    (note,) = run.notes
    assert note.startswith("cache before: docker buildx du: ")
    assert note.endswith("; measured with docker system df")


def test_a_target_without_watch_interval_s_is_never_measured_by_a_ping(make_watching):
    watching = make_watching(watch_interval_s=0)
    watching.ping()
    assert [watching.ping(MINUTE) for _ in range(5)] == [[]] * 5


def test_runs_and_measures_are_kept_as_samples_a_prune_starting_a_new_line(make_watching):
    watching = make_watching()
    watching.ping()
    watching.ping(MINUTE)
    kinds = [s.kind for s in watching.store.samples("build-1", 0.0)]
    assert kinds == [SampleKind.BEFORE, SampleKind.AFTER, SampleKind.WATCH]


def test_a_sample_missing_min_free_starts_a_watch_run_past_the_critical_interval(
    make_watching,
):
    host = DiskHost(size=100 * GB, others=60 * GB, young=30 * GB)  # 10 GB free
    # min_free alone: at 98 % used the disk is not yet critical
    watching = make_watching(host, min_free=FreeGoal(size=5 * GB), critical_percent=99.0)
    watching.ping()
    host.others += 8 * GB  # a build fills the disk: 2 GB free, 3 GB short
    assert watching.ping(MINUTE) == PROBES  # within critical_interval_s of the last start
    assert watching.told[-1].verdict.act == Act.PRUNE and watching.told[-1].run_id is None
    sent = watching.ping(900)
    assert sent[: len(PROBES)] == PROBES
    assert "docker builder prune -f --filter until=24h" in sent
    assert sent.count(f"docker builder prune -f --keep-storage {27 * GB}") == 1
    assert watching.runs() == [("cron", "ok"), ("watch", "ok")]
    assert host.free == 5 * GB
    # started on a goal missed now, not ahead of a forecast: its record keeps none
    assert watching.store.recent_runs("build-1")[0].forecast is None


def test_a_ping_that_waits_answers_after_its_measures_and_the_runs_they_start(make_watching):
    """PRUNEHOOK_WAIT_FOR_RUN (forced on a function platform, whose CPU freezes after the
    answer): a measure and the watch run it starts finish inside the ping."""
    host = DiskHost(size=100 * GB, others=60 * GB, young=30 * GB)  # 10 GB free
    watching = make_watching(host, min_free=FreeGoal(size=5 * GB), critical_percent=99.0)
    watching.ping()
    host.others += 8 * GB  # 2 GB free, 3 GB short of min_free
    watching.clock.advance(900)
    sent = len(host.commands)

    watching.service.handle(PING, wait=True)  # no join_all: what ran, ran before the answer

    assert host.commands[sent : sent + len(PROBES)] == PROBES
    assert f"docker builder prune -f --keep-storage {27 * GB}" in host.commands[sent:]
    assert watching.runs() == [("cron", "ok"), ("watch", "ok")]


class HeldHosts:
    """A DiskHost for each target; a command `hold` names waits at its host until let through."""

    def __init__(self, names: Sequence[str]):
        self.hosts = {name: DiskHost() for name in names}
        self.gates: dict[tuple[str, str], threading.Event] = {}

    def hold(self, name: str, command: str) -> threading.Event:
        """Hold the commands to `name` that start with `command` until the event is set."""
        gate = self.gates[name, command] = threading.Event()
        return gate

    def __call__(self, target: Target, command: str) -> Execution:
        for (name, start), gate in list(self.gates.items()):
            if name == target.name and command.startswith(start):
                assert gate.wait(30), f"{command!r} to {name} was never let through"
        return self.hosts[target.name](target, command)


def test_a_waiting_ping_answers_after_the_run_its_measure_started_though_another_ping_swept(
    tmp_path, monkeypatch
):
    """Two cron pings at once (a platform that takes concurrent requests): the waiting one's
    measure of build-1 starts a run, then the other ping queues a measure of build-2 (the
    measure pool forgets the one that ended). The waiting ping answers once that run is
    recorded, not while it still runs."""
    names = ("build-0", "build-1", "build-2")
    held = HeldHosts(names)
    policy = watched(min_free=FreeGoal(size=5 * GB), critical_percent=99.0).policy
    targets = tuple(Target(name, SSHEndpoint("127.0.0.1"), policy) for name in names)
    store, clock = SQLiteStore(tmp_path / "state.sqlite3"), Clock()
    service = PruneService(Fleet(targets), store, held, clock=clock)
    service.handle(PING)  # each target's first run
    service.join_all(30)
    held.hosts["build-1"].others += 8 * GB  # 2 GB free, 3 GB short of min_free
    clock.advance(900)  # past critical_interval_s: a measure of build-1 starts a run
    # the waiting ping waits for build-0's measure first, held until the other ping swept
    measuring = held.hold("build-0", DF)
    pruning = held.hold("build-1", "docker builder prune")

    queued: dict[str, Future[Watched]] = {}
    swept, settled = threading.Event(), threading.Event()
    sweep, wait = service.watch.sweep, service.runs.wait

    # the measures the sweeps queued: the other ping comes once build-1's has ended
    def sweep_seen(targets):
        found = sweep(targets)
        queued.update(found)
        swept.set()
        return found

    # the run's prune is let through once the ping waits for the run (or has answered): a
    # ping that answers first answers while its run still runs
    def wait_seen(run_id: int, timeout: float) -> None:
        settled.set()
        wait(run_id, timeout)

    monkeypatch.setattr(service.watch, "sweep", sweep_seen)
    monkeypatch.setattr(service.runs, "wait", wait_seen)
    answered: dict[str, list[object]] = {}

    def waiting_ping() -> None:
        service.handle(read_cron({}, ["build-0", "build-1"]), wait=True)
        answered["runs"] = [(run.id, run.result) for run in store.recent_runs("build-1")]
        answered["prunes"] = held.hosts["build-1"].prunes()
        settled.set()

    pinging = threading.Thread(target=waiting_ping)
    pinging.start()
    assert swept.wait(30)
    measured = queued["build-1"].result(30)
    assert measured.run_id is not None
    service.handle(read_cron({}, ["build-2"]))  # the other ping, while the first waits
    measuring.set()
    assert settled.wait(30)
    pruning.set()
    pinging.join(30)
    assert not pinging.is_alive()

    assert (measured.run_id, Result.OK) in answered["runs"]
    assert f"docker builder prune -f --keep-storage {27 * GB}" in answered["prunes"]
    service.join_all(30)


def test_a_disk_over_critical_percent_with_its_goals_met_is_pruned_under_it_once(make_watching):
    """max_cache is met, but the disk is 96 % used with young cache the age prune leaves: the
    run prunes under critical_percent (95) instead of stopping at the goals met, and the
    measures after ask for nothing (no run every critical_interval_s freeing nothing)."""
    host = DiskHost(size=100 * GB, others=66 * GB, young=30 * GB)  # 4 GB free: 96 % used
    watching = make_watching(host, max_cache=50 * GB)

    sent = watching.ping()  # the first ping's run: the age prune leaves the young cache

    assert sent.count(f"docker builder prune -f --keep-storage {29 * GB - 1}") == 1
    assert host.free == 5 * GB + 1  # one byte under 95 % used
    for _ in range(3):
        assert watching.ping(900) == PROBES  # measured, nothing asked
        assert watching.told[-1].verdict.act == Act.NOTHING
    assert watching.runs() == [("cron", "ok")]


def test_a_full_disk_with_almost_no_cache_is_told_once_and_never_pruned_in_a_loop(
    make_watching,
):
    host = DiskHost(size=100 * GB, others=97 * GB, young=10**6)  # 97% used, 1 MB of cache
    watching = make_watching(host, min_free=FreeGoal(size=5 * GB))
    watching.ping()
    for _ in range(12):  # three hours of pings, each measuring
        assert watching.ping(900) == PROBES
    assert watching.runs() == [("cron", "ok")]
    # the first run's last measure already found it so (and that run told it): told never
    verdicts = [(told.verdict.act, told.repeated) for told in watching.told if told.verdict]
    assert verdicts == [(Act.CACHE_TOO_SMALL, True)] * 12
    assert "but the cache is only 0B" in watching.told[0].verdict.reason


def test_a_steady_fill_is_pruned_ahead_of_its_forecast_with_room_for_the_horizon(
    make_watching,
):
    # 0.7 GB of new cache every 7 minutes (6 GB an hour): 60 GB free, min_free 20 GB
    host = DiskHost(size=100 * GB, others=40 * GB, young=0)
    watching = make_watching(
        host, min_free=FreeGoal(size=20 * GB), forecast_window_s=3600, forecast_horizon_s=3600
    )
    watching.ping()
    for _ in range(80):
        host.young += 7 * GB // 10
        watching.ping(420)
        if watching.runs()[-1][0] == "forecast":
            break
    assert watching.runs() == [("cron", "ok"), ("forecast", "ok")]
    run = watching.store.recent_runs("build-1")[0]
    assert run.forecast is not None
    assert run.forecast.fill_rate_bytes_per_s == pytest.approx(GB / 600)
    assert run.forecast.min_free_at is not None
    assert run.forecast.min_free_at - run.started_ts <= 3600  # within the horizon
    # started with min_free still free, and pruned the young cache (stage 1 leaves it) to
    # make room for the hour's fill ahead, not only for min_free
    assert run.disk_free_before is not None and run.disk_free_before > 20 * GB
    assert run.keep_storage_bytes is not None
    assert host.free == pytest.approx(20 * GB + 6 * GB, rel=0.01)


def test_a_flat_disk_is_measured_and_never_pruned_ahead(make_watching):
    watching = make_watching(min_free=FreeGoal(size=20 * GB), forecast_window_s=3600)
    watching.ping()
    for _ in range(20):
        watching.ping(600)
    assert watching.runs() == [("cron", "ok")]
    record = watching.store.target_record("build-1")
    assert record is not None and record.forecast is not None
    assert record.forecast.min_free_at is None and record.forecast.full_at is None


def test_a_failed_measure_is_counted_and_asks_for_nothing(make_watching):
    host = DiskHost()
    watching = make_watching(host)
    watching.ping()
    host.answers[DF] = host.answers["docker system df"] = PROBE_FAILED
    kept = watching.store.samples("build-1", 0)
    for _ in range(3):
        watching.ping(MINUTE)
        last: Watched = watching.told[-1]
        assert (last.result, last.verdict, last.run_id) == (Measurement.FAILED, None, None)
    assert watching.runs() == [("cron", "ok")]
    # a measure that read nothing is no sample: a host down for a day of pings would push
    # every real sample out of the SAMPLES_KEPT kept
    assert watching.store.samples("build-1", 0) == kept


@pytest.mark.parametrize("failing", [[DF, "docker system df"], [DF]], ids=["host", "df"])
def test_a_host_out_of_reach_is_tried_again_a_watch_interval_later_by_any_process(
    make_watching, failing
):
    host = DiskHost()
    watching = make_watching(host, watch_interval_s=10 * MINUTE)
    watching.ping()
    healthy = dict(host.answers)
    for probe in failing:
        host.answers[probe] = PROBE_FAILED
    assert watching.ping(10 * MINUTE) == PROBES
    replica = watching.replica()
    assert [watching.ping(MINUTE) + replica.ping() for _ in range(9)] == [[]] * 9
    host.answers.clear()
    host.answers.update(healthy)
    assert watching.ping(MINUTE) == PROBES  # back: measured, and on its interval again
    assert watching.ping(MINUTE) == []
    assert [told.result for told in watching.told] == [Measurement.FAILED, Measurement.OK]


def test_a_measure_that_could_not_read_the_cache_keeps_the_cache_last_read(make_watching):
    host = DiskHost()
    watching = make_watching(host)
    watching.ping()
    host.others += 5 * GB
    host.answers["docker system df"] = Execution(1, "", "Cannot connect to Docker\n", 0.01)
    watching.ping(MINUTE)
    record = watching.store.target_record("build-1")
    assert record is not None
    assert (record.last_disk_free, record.last_measured_ts) == (5 * GB, watching.clock.now)
    assert record.last_cache == 30 * GB  # as a run that could not read it keeps it


class BusyDaemon(DiskHost):
    """Once `hold` is set, the next cache probe waits for `release` (a busy Docker daemon)."""

    def __init__(self, **numbers):
        super().__init__(**numbers)
        self.hold, self.holding, self.release = False, threading.Event(), threading.Event()

    def __call__(self, target: Target, command: str) -> Execution:
        if command == "docker system df" and self.hold:
            self.hold = False
            self.holding.set()
            self.release.wait(30)
        return super().__call__(target, command)


def test_a_measure_that_began_before_a_run_ended_leaves_the_runs_figures(make_watching):
    """The measure read df (10 GB free), then waited on a busy daemon while a run freed 20 GB
    and recorded 30 GB free: the measure's older figure must not overwrite the run's."""
    host = BusyDaemon(size=100 * GB, others=60 * GB, young=30 * GB)
    watching = make_watching(host)
    watching.ping()  # the first run: its cache is young, nothing freed
    host.young, host.old = 10 * GB, 20 * GB
    watching.clock.advance(3600)
    target = watching.service.fleet.targets[0]
    host.hold = True
    measuring = threading.Thread(target=watching.service.watch.measure, args=(target,))
    measuring.start()
    assert host.holding.wait(30)
    watching.clock.advance(1)
    watching.service.handle(Trigger(Source.CLI, True, "prunehook prune"), force=True)
    watching.service.join_all(30)
    watching.clock.advance(2)
    host.release.set()
    measuring.join(30)
    assert not measuring.is_alive()
    record = watching.store.target_record("build-1")
    assert record is not None and record.last_disk_free == host.free == 30 * GB
    assert record.forecast is not None and record.forecast.samples == 1  # since the prune
    kinds = [(s.kind, s.disk_free) for s in watching.store.samples("build-1", 0)][-3:]
    assert kinds == [
        (SampleKind.WATCH, 10 * GB),
        (SampleKind.BEFORE, 10 * GB),
        (SampleKind.AFTER, 30 * GB),
    ]


def test_a_run_aimed_past_the_goals_prunes_towards_the_aim_and_is_judged_by_the_goals():
    host = DiskHost(size=100 * GB, others=60 * GB, young=10 * GB)  # 30 GB free
    target = watched(min_free=FreeGoal(size=20 * GB))
    steps = RunSteps(CommandSession(host, target), target)
    aim = Goals(min_free=FreeGoal(size=45 * GB))  # more than all the cache can give
    outcome, _ = run_stages(steps, aim=aim)
    assert host.prunes()[-1] == "docker builder prune -f --keep-storage 0"
    assert (outcome.goal_met, outcome.free_short_bytes) == (True, 0)  # 40 GB free >= 20 GB
