"""Run contrib/kubernetes/deployment.yaml's container here, as close to the pod as a machine
without a cluster allows, and call its probes and a hook.

    .venv/bin/python tools/try_kubernetes_container.py      # as root (sshd, dockerd, mounts)

Starts a PostgreSQL, a dockerd and an sshd of its own (tests/harness), then the container's
command with the variables of the settings ConfigMap and of the Secret (test values; the
build host on loopback), as the pod's `runAsUser` (a uid with no passwd entry), in a mount
namespace of its own where the repository (the image's working directory) is read-only,
as `readOnlyRootFilesystem` makes it, and `/tmp` a fresh tmpfs (the pod's `emptyDir`). The
known_hosts file is bound read-only at the ConfigMap volume's path under /mnt (a tmpfs of
the namespace: /etc stays as it is). Prints what each call answered
and exits 0 when the probes, a waited-for prune and the guard's log all say what
docs/production.md says. Kubernetes itself (scheduling, the kubelet's probes, Services) is
not tried.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import (  # noqa: E402
    DockerEngine,
    PostgresServer,
    SSHServer,
    free_port,
    http_call,
    operator_environment,
)

TOKEN = "try-kubernetes-" + "k" * 24


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted((REPO / "contrib" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def wait_for_health(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if http_call(base + "/healthz", None, "GET")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the container did not answer /healthz (exit code {process.poll()})")


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("run as root: it starts sshd and dockerd, and mounts in a namespace")
    found = documents()
    pod = found[("Deployment", "prunehook")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    uid = pod["securityContext"]["runAsUser"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "known-hosts"]
    root = Path(tempfile.mkdtemp(prefix="ph-k8s-"))
    # readable by the pod's uid: the known_hosts file the ConfigMap volume would hold
    volume = Path(tempfile.mkdtemp(prefix="ph-k8s-volume-"))
    volume.chmod(0o755)
    database = PostgresServer().start()
    engine = DockerEngine(root / "docker").start()
    host = SSHServer(root / "sshd", engine.host).start()
    process = None
    try:
        shutil.copy(host.known_hosts, volume / "known_hosts")
        (volume / "known_hosts").chmod(0o644)
        settings = dict(found[("ConfigMap", "prunehook-settings")]["data"])
        settings |= {
            "PRUNEHOOK_SSH_HOST": "127.0.0.1",
            "PRUNEHOOK_SSH_USER": "root",
            "PRUNEHOOK_SSH_PORT": str(host.port),
        }
        secret = {
            "token": TOKEN,
            "ssh-key": host.client_key.read_text(),
            "database-url": database.url,
        }
        from_secret = {
            e["name"]: secret[e["valueFrom"]["secretKeyRef"]["key"]] for e in container["env"]
        }
        env = operator_environment(**settings, **from_secret)
        for name in ("HOME", "USER", "LOGNAME"):  # the pod's user has none
            env.pop(name, None)
        port = free_port()
        command = [p.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for p in container["command"]]
        target = mount["mountPath"]
        inside = " && ".join(
            [
                f"mount --bind -o ro {shlex.quote(str(REPO))} {shlex.quote(str(REPO))}",
                # the volume's path in the pod, on a tmpfs of this namespace only
                "mount -t tmpfs -o size=1m tmpfs /mnt",
                f"mkdir -p /mnt{target} && mount --bind -o ro {volume} /mnt{target}",
                "mount -t tmpfs -o size=64m tmpfs /tmp",
                f"exec setpriv --reuid={uid} --regid={uid} --clear-groups -- "
                + shlex.join(command),
            ]
        )
        env["PRUNEHOOK_SSH_KNOWN_HOSTS"] = "/mnt" + settings["PRUNEHOOK_SSH_KNOWN_HOSTS"]
        log_path = root / "container.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", inside],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, process)
        answers = {
            probe: http_call(base + container[probe]["httpGet"]["path"], None, "GET")
            for probe in ("readinessProbe", "livenessProbe")
        }
        code, ran = http_call(base + "/hooks/cron?wait=1", TOKEN)
        users = subprocess.run(
            ["ps", "-o", "uid=", "--ppid", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
        for probe, answer in answers.items():
            print(f"{probe}: {answer}")
        print(f"cron: {code} {ran.get('decision')} {ran.get('run', {}).get('result')}")
        print(f"guard log: {host.commands_run()}")
        print(f"gunicorn's workers run as uid {sorted(set(users))}")
        good = (
            all(answer[0] == 200 for answer in answers.values())
            and (code, ran.get("run", {}).get("result")) == (200, "ok")
            and [line.split()[0] for line in host.commands_run()] == ["allowed"]
            and set(users) == {str(uid)}
        )
        if not good:
            print(log_path.read_text()[-4000:])
        return 0 if good else 1
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        host.stop()
        engine.stop()
        database.close()
        shutil.rmtree(volume, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
