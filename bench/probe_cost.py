"""What measuring the build cache costs on a host with many volumes, images and containers.

Issue 17 item 6: `docker system df` sizes every image, container and volume to print the
one row prunehook reads ("Build Cache"). This times the candidate probes against it on a
dockerd of our own (tests/harness/docker.py), in alternating rounds, medians, in two
phases of the same run:
- baseline: the engine holds only some build cache;
- populated: the same, plus N volumes holding many small files (written straight into
  each volume's _data folder), M imported images with a distinct layer each, and C
  created (never started) containers with files in their writable layer.
The candidates: `docker system df` (the reference), `docker system df --format '{{json .}}'`,
the other docker client on PATH if there is one, the Engine API's build-cache-only form
`GET /system/df?type=build-cache` through curl on the socket (unversioned: the engine's own
API version, where an engine before 1.42 ignores `type`; and pinned to /v1.42/, which such
an engine refuses) and in-process (the daemon's share alone), `docker buildx du` where a
buildx plugin is installed, and two floors that size nothing (`docker version --format
...`, `GET /_ping`). A probe that fails is reported with its exit code and stderr, not
timed. Every probe that answers also gives the build cache's size in bytes, checked
against the reference.

Run by hand as root from the repository root (under a minute with the defaults):
    .venv/bin/python bench/probe_cost.py [--rounds 9] [--volumes 50] [--images 100]
The heavier run of docs/BENCHMARKS.md (about two minutes) adds
    --files-per-volume 2000 --file-bytes 1024 --files-per-container 500
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import median, parser_of

from tests.harness import DockerEngine, PartMissing, find_binary
from tests.harness.docker import _UnixHTTPConnection
from webhook.core.disk import parse_build_cache
from webhook.core.sizes import parse_size


@dataclass
class Probe:
    name: str
    run: Callable[[], str]  # the probe's answer; raises on failure
    size: Callable[[str], int | None]  # the build cache's bytes in that answer
    shown: str  # the command, as an operator would type it


class Failed(RuntimeError):
    pass


def cli(engine: DockerEngine, client: str, *args: str) -> Callable[[], str]:
    env = {**os.environ, "DOCKER_HOST": engine.host}

    def run() -> str:
        done = subprocess.run([client, *args], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise Failed(f"rc {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    return run


def http_get(engine: DockerEngine, path: str) -> Callable[[], str]:
    def run() -> str:
        connection = _UnixHTTPConnection(str(engine.socket))
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read().decode()
        finally:
            connection.close()
        if answer.status != 200:
            raise Failed(f"HTTP {answer.status}: {body.strip()}")
        return body

    return run


def size_from_table(output: str) -> int | None:
    found = parse_build_cache(output)
    return None if found is None else found[1]


def size_from_json_lines(output: str) -> int | None:
    for line in output.splitlines():
        row = json.loads(line)
        if row.get("Type") == "Build Cache":
            return parse_size(row["Size"])
    return None


def size_from_api(output: str) -> int | None:
    """As the CLI adds it up for its row: the records not shared with an image."""
    answer = json.loads(output)
    if "BuildCache" not in answer:
        return None
    # an engine before API 1.42 answers `"BuildCache": null` for an empty cache
    records = answer["BuildCache"] or []
    return sum(record["Size"] for record in records if not record.get("Shared"))


_BUILDX_TOTAL = re.compile(r"^Total:\s+(\S+)\s*$", re.MULTILINE)


def size_from_buildx_du(output: str) -> int | None:
    """`docker buildx du` ends with `Shared:`/`Private:`/`Reclaimable:`/`Total:` lines
    (only the last two when nothing is shared); `Total:` counts shared records too."""
    match = _BUILDX_TOTAL.search(output)
    return None if match is None else parse_size(match.group(1))


def nothing(_output: str) -> int | None:
    return None


def probes(engine: DockerEngine, clients: list[str]) -> list[Probe]:
    sock = str(engine.socket)
    docker = clients[0]
    found = [
        Probe(
            "docker system df",
            cli(engine, docker, "system", "df"),
            size_from_table,
            "docker system df",
        ),
        Probe(
            "docker system df --format '{{json .}}'",
            cli(engine, docker, "system", "df", "--format", "{{json .}}"),
            size_from_json_lines,
            "docker system df --format '{{json .}}'",
        ),
    ]
    for other in clients[1:]:
        version = cli(engine, other, "version", "--format", "{{.Client.Version}}")().strip()
        found.append(
            Probe(
                f"docker system df, client {version} ({other})",
                cli(engine, other, "system", "df"),
                size_from_table,
                f"{other} system df",
            )
        )
    found += [
        Probe(
            "curl GET /system/df?type=build-cache",
            cli_curl(sock, "/system/df?type=build-cache"),
            size_from_api,
            f"curl -sS --fail-with-body --unix-socket {sock}"
            " 'http://localhost/system/df?type=build-cache'",
        ),
        Probe(
            "curl GET /v1.42/system/df?type=build-cache",
            cli_curl(sock, "/v1.42/system/df?type=build-cache"),
            size_from_api,
            f"curl -sS --fail-with-body --unix-socket {sock}"
            " 'http://localhost/v1.42/system/df?type=build-cache'",
        ),
        Probe(
            "in-process GET /system/df?type=build-cache (daemon only)",
            http_get(engine, "/system/df?type=build-cache"),
            size_from_api,
            "GET /system/df?type=build-cache",
        ),
        Probe(
            "docker buildx du",
            cli(engine, docker, "buildx", "du"),
            size_from_buildx_du,
            "docker buildx du",
        ),
        Probe(
            "floor: docker version --format '{{.Server.Version}}'",
            cli(engine, docker, "version", "--format", "{{.Server.Version}}"),
            nothing,
            "docker version --format '{{.Server.Version}}'",
        ),
        Probe("floor: in-process GET /_ping", http_get(engine, "/_ping"), nothing, "GET /_ping"),
    ]
    return found


def cli_curl(sock: str, path: str) -> Callable[[], str]:
    curl = shutil.which("curl")

    def run() -> str:
        if curl is None:
            raise Failed("curl is not installed")
        done = subprocess.run(
            [curl, "-sS", "--fail-with-body", "--unix-socket", sock, f"http://localhost{path}"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise Failed(f"rc {done.returncode}: {(done.stderr + done.stdout).strip()}")
        return done.stdout

    return run


def populate(engine: DockerEngine, work: Path, args: argparse.Namespace) -> None:
    """Volumes with files, images with a layer each, containers with files in their
    writable layer: what `docker system df` has to size and the build cache does not hold."""
    started = time.perf_counter()
    for index in range(args.volumes):
        name = f"bench-volume-{index}"
        engine.cli("volume", "create", name)
        data = engine.data_root / "volumes" / name / "_data"
        for number in range(args.files_per_volume):
            (data / f"f{number}.bin").write_bytes(os.urandom(args.file_bytes))

    def make_image(index: int) -> None:
        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w") as archive:
            blob = os.urandom(args.image_bytes)
            member = tarfile.TarInfo(f"image-{index}.bin")
            member.size = len(blob)
            archive.addfile(member, io.BytesIO(blob))
        engine.cli("import", "-", f"bench-image:{index}", stdin=payload.getvalue())

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(make_image, range(args.images)))

    for index in range(args.containers):
        name = f"bench-container-{index}"
        engine.cli("create", "--name", name, "--network", "none", f"bench-image:{index}", "/none")
        upper = engine.cli("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name).strip()
        for number in range(args.files_per_container):
            (Path(upper) / f"c{number}.bin").write_bytes(os.urandom(args.file_bytes))
    files = args.volumes * args.files_per_volume + args.containers * args.files_per_container
    print(
        f"populated: {args.volumes} volumes x {args.files_per_volume} files, {args.images}"
        f" images, {args.containers} containers x {args.files_per_container} files"
        f" ({files} files of {args.file_bytes} B) in {time.perf_counter() - started:.1f} s"
    )


def measure(found: list[Probe], rounds: int) -> dict[str, list[float]]:
    """Median-ready timings of the probes that answer, in an order rotated each round."""
    timings: dict[str, list[float]] = {probe.name: [] for probe in found}
    for round_number in range(rounds):
        shift = round_number % len(found)
        for probe in found[shift:] + found[:shift]:
            started = time.perf_counter()
            probe.run()
            timings[probe.name].append(time.perf_counter() - started)
    return timings


def check(found: list[Probe]) -> tuple[list[Probe], dict[str, str]]:
    """The probes that answer (each run once, as a warm-up); why the others did not."""
    working, failures, sizes = [], {}, {}
    for probe in found:
        try:
            output = probe.run()
        except Failed as error:
            failures[probe.name] = str(error)
            continue
        working.append(probe)
        sizes[probe.name] = probe.size(output)
        first = output.strip().splitlines()[:6]
        print(f"  $ {probe.shown}\n" + "".join(f"    {line[:200]}\n" for line in first))
    print("  build cache bytes per probe:", {k: v for k, v in sizes.items() if v is not None})
    return working, failures


def report(phase: str, found: list[Probe], timings: dict[str, list[float]]) -> None:
    reference = median(timings["docker system df"])
    print(f"\n{phase}: medians of {len(timings['docker system df'])} rounds")
    print("| probe | median ms | min ms | vs `docker system df` |")
    print("|---|---|---|---|")
    for probe in found:
        values = timings[probe.name]
        print(
            f"| {probe.name} | {median(values) * 1000:.1f} | {min(values) * 1000:.1f} |"
            f" {median(values) / reference:.2f}x |"
        )


def api_facts(engine: DockerEngine) -> None:
    version = engine.api("GET", "/version")
    print(
        f"engine {version['Version']}, API {version['ApiVersion']}"
        f" (min {version.get('MinAPIVersion')})"
    )
    answer = json.loads(http_get(engine, "/system/df?type=build-cache")())
    print(
        "  GET /system/df?type=build-cache answers with:",
        {key: len(value) if isinstance(value, list) else value for key, value in answer.items()},
    )
    try:
        http_get(engine, "/v1.42/system/df?type=build-cache")()
    except Failed as error:
        print(f"  GET /v1.42/system/df?type=build-cache: {error}")


def main() -> None:
    parser = parser_of(__doc__)
    parser.add_argument("--rounds", type=int, default=9, help="rounds per phase (default 9)")
    parser.add_argument("--volumes", type=int, default=50)
    parser.add_argument("--files-per-volume", type=int, default=400)
    parser.add_argument("--file-bytes", type=int, default=8192, help="each small file's size")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--image-bytes", type=int, default=65536, help="each image's one file")
    parser.add_argument("--containers", type=int, default=20, help="created, never started")
    parser.add_argument("--files-per-container", type=int, default=100)
    parser.add_argument("--builds", type=int, default=5, help="builds making the build cache")
    parser.add_argument("--build-bytes", type=int, default=1 << 20)
    args = parser.parse_args()

    clients = []
    for candidate in ("/usr/bin/docker", "docker", "/usr/local/bin/docker"):
        try:
            path = os.path.realpath(find_binary(candidate))
        except PartMissing:
            continue
        if path not in [os.path.realpath(known) for known in clients]:
            clients.append(path)
    work = Path(tempfile.mkdtemp(prefix="ph-probe-cost-"))
    engine = DockerEngine(work / "dockerd")
    try:
        engine.start()
        engine.client = clients[0]
        api_facts(engine)
        engine.fill_build_cache(work / "context", [args.build_bytes] * args.builds)
        found = probes(engine, clients)
        print("\nbaseline (build cache only), each probe once:")
        working, failures = check(found)
        for name, why in failures.items():
            print(f"  unavailable: {name}: {why}")
        baseline = measure(working, args.rounds)
        populate(engine, work, args)
        print("populated, each probe once:")
        check(working)
        api_facts(engine)
        populated = measure(working, args.rounds)
    finally:
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)
    report("baseline (build cache only)", working, baseline)
    report("populated", working, populated)
    print("\n| probe | populated / baseline |")
    print("|---|---|")
    for probe in working:
        growth = median(populated[probe.name]) / median(baseline[probe.name])
        print(f"| {probe.name} | {growth:.2f}x |")


if __name__ == "__main__":
    main()
