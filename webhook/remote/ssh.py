"""Running commands on the build host over SSH with paramiko: the probes and stages of
one run on one connection (`SSHSession`), or a single command (`SSHRunner.execute`).

Host keys are verified against a known_hosts file and never auto-accepted.
stdout and stderr are drained while the command runs (paramiko's
`recv_exit_status` hangs once output fills the window and nobody reads), and
only bounded tails are kept. Nothing here raises: every failure comes back as
an Execution with an error kind.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from webhook.core.outcome import ErrorKind, Execution

if TYPE_CHECKING:
    import paramiko

    from webhook.core.targets import SSHEndpoint, Target

TAIL_BYTES = 16 * 1024
_READ_CHUNK = 32 * 1024
_IDLE_WAIT_S = 0.02


class Tail:
    """The last TAIL_BYTES of a stream, however much passes through."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) > 2 * TAIL_BYTES:
            del self._buffer[:-TAIL_BYTES]

    def text(self) -> str:
        return bytes(self._buffer[-TAIL_BYTES:]).decode("utf-8", errors="replace")


class SSHFailure(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def load_private_key(endpoint: SSHEndpoint) -> paramiko.PKey:
    import paramiko

    if not (endpoint.key_file or endpoint.key):
        raise SSHFailure("key_missing", "no private key: set PRUNEHOOK_SSH_KEY_FILE")
    try:
        if endpoint.key_file:
            return paramiko.PKey.from_path(endpoint.key_file)
        for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                return key_class.from_private_key(io.StringIO(endpoint.key))
            except paramiko.SSHException:
                continue
    except Exception as error:  # cryptography and paramiko raise many kinds for a bad key
        raise SSHFailure("key_invalid", f"cannot load the private key: {error}") from error
    raise SSHFailure("key_invalid", "PRUNEHOOK_SSH_KEY holds no key paramiko can read")


def known_name(address: str, port: int) -> str:
    """How known_hosts names a host: `address`, or `[address]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def fetch_host_key(address: str, port: int, timeout_s: float) -> paramiko.PKey:
    """The key the SSH server at `address:port` offers, before any login: to be shown and
    confirmed by a person (`prunehook hosts add`), never trusted on its own."""
    import paramiko

    try:
        sock = socket.create_connection((address, port), timeout=timeout_s)
    except OSError as error:
        raise SSHFailure(
            ErrorKind.CONNECT_ERROR, f"cannot reach {address}:{port}: {_reason(error)}"
        ) from error
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = transport.handshake_timeout = timeout_s
        transport.start_client(timeout=timeout_s)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise SSHFailure(
            ErrorKind.SSH_ERROR, f"{address}:{port}: no key exchange: {_reason(error)}"
        ) from error
    finally:
        transport.close()


class KnownHosts:
    """Each known_hosts file parsed once, and again only when it changes. paramiko's
    `load_host_keys` compares every line with each entry before it, and a client loads the
    file at every connection: a fleet's file of 1,000 hosts cost about 100 ms of CPU a
    connection (docs/BENCHMARKS.md, "Measure sweep"). A connection is given only the keys
    of the name it looks up, so RejectPolicy still refuses every other host."""

    def __init__(self) -> None:
        # path -> (what its stat said, plain name -> keys, hashed entries)
        self._files: dict[str, tuple[tuple[int, int, int], dict[str, list], list]] = {}

    def _parsed(self, path: str) -> tuple[dict[str, list], list]:
        import paramiko

        stat = os.stat(path)
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        known = self._files.get(path)
        if known is not None and known[0] == version:
            return known[1], known[2]
        plain: dict[str, list] = {}
        hashed = []
        with open(path, encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                try:
                    entry = paramiko.hostkeys.HostKeyEntry.from_line(text, number)
                except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey):
                    continue  # as paramiko's own load: a line it cannot read is passed over
                if entry is None:
                    continue
                for name in entry.hostnames:
                    if name.startswith("|1|"):
                        hashed.append((name, entry.key))
                    else:
                        plain.setdefault(name, []).append(entry.key)
        self._files[path] = (version, plain, hashed)
        return plain, hashed

    def keys(self, path: str, name: str) -> list[paramiko.PKey]:
        """The keys known_hosts at `path` has for `name` (`known_name`), the first of each
        key type, as paramiko's lookup takes it."""
        import paramiko

        plain, hashed = self._parsed(path)
        keys = list(plain.get(name, ()))
        keys += [key for entry, key in hashed if paramiko.HostKeys.hash_host(name, entry) == entry]
        first: dict[str, paramiko.PKey] = {}
        for key in keys:
            first.setdefault(key.get_name(), key)
        return list(first.values())

    def trust(self, client: paramiko.SSHClient, path: str, name: str) -> None:
        """Give `client` the keys of `name` alone."""
        for key in self.keys(path, name):
            client.get_host_keys().add(name, key.get_name(), key)


KNOWN_HOSTS = KnownHosts()


def _connect(endpoint: SSHEndpoint) -> paramiko.SSHClient:
    import paramiko

    pkey = load_private_key(endpoint)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    name = known_name(endpoint.address, endpoint.port)
    try:
        KNOWN_HOSTS.trust(client, str(endpoint.known_hosts_path), name)
    except (OSError, paramiko.SSHException) as error:
        raise SSHFailure(
            "host_key_unknown", f"cannot read known_hosts {endpoint.known_hosts_path}: {error}"
        ) from error
    timeout = endpoint.connect_timeout_s
    try:
        client.connect(
            endpoint.address,
            port=endpoint.port,
            username=endpoint.user,
            pkey=pkey,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except Exception as error:
        # paramiko reports a silent peer as either "Error reading SSH protocol banner" or
        # "No existing session", depending on a race: whether a banner came is what counts
        saw_banner = bool(getattr(client.get_transport(), "remote_version", ""))
        client.close()
        raise _connect_failure(error, endpoint, saw_banner) from error
    return client


def _connect_failure(error: Exception, endpoint: SSHEndpoint, saw_banner: bool) -> SSHFailure:
    """Why connecting failed, as an error kind and a message."""
    import paramiko

    where = f"{endpoint.address}:{endpoint.port}"
    if isinstance(error, paramiko.BadHostKeyException):
        message = f"host key of {endpoint.address} does not match known_hosts: refused ({error})"
        return SSHFailure("host_key_changed", message)
    if isinstance(error, paramiko.AuthenticationException):
        where_to = f"~{endpoint.user}/.ssh/authorized_keys on {endpoint.address}"
        message = f"{endpoint.user}@{where} refused the key ({error}): check {where_to}"
        return SSHFailure("auth_failed", message)
    if isinstance(error, paramiko.SSHException):
        message = str(error)
        if "not found in known_hosts" in message:
            where_to = f"add it to {endpoint.known_hosts_path} (never auto-accepted)"
            return SSHFailure("host_key_unknown", f"{message}: {where_to}")
        if not saw_banner:
            timeout = endpoint.connect_timeout_s
            return SSHFailure("banner_timeout", f"{where} sent no SSH banner within {timeout}s")
        return SSHFailure("ssh_error", message)
    if isinstance(error, ConnectionRefusedError | paramiko.ssh_exception.NoValidConnectionsError):
        errors = getattr(error, "errors", {}).values() or [error]
        if all(isinstance(each, ConnectionRefusedError) for each in errors):
            return SSHFailure("connect_refused", f"{where} refused the connection")
        return SSHFailure("connect_error", f"cannot connect: {error}")
    if isinstance(error, TimeoutError):
        return SSHFailure("connect_timeout", f"no answer from {where}")
    if isinstance(error, OSError):
        return SSHFailure("connect_error", f"cannot connect: {error.strerror or error}")
    if isinstance(error, EOFError):  # paramiko re-raises what its transport thread saw
        message = f"{where} closed the connection during the SSH handshake"
        return SSHFailure("connect_error", message)
    # e.g. UnicodeError: a host name IDNA cannot encode
    return SSHFailure("connect_error", f"cannot connect: {_reason(error)}")


def _reason(error: BaseException) -> str:
    """`Type: message`; paramiko's EOFError (a clean close by the peer) has no message."""
    if isinstance(error, EOFError) and not str(error):
        return "the host closed the connection"
    return f"{type(error).__name__}: {error}"


def _lost_before_exit(transport: paramiko.Transport, rc: int) -> str | None:
    """Why the connection ended before the command's exit status came; None if it did not.

    paramiko closes the channels of a transport that died (a reset, the host's sshd
    killed) and a closed channel reads as exited with -1, no status: that is a lost
    connection, not the command's result. The transport keeps the exception it died of
    before it closes them. A live transport with -1 is a command ended by a signal.
    """
    if rc != -1:
        return None
    error = transport.get_exception()
    if error is not None:
        return _reason(error)
    return None if transport.is_active() else "the connection closed"


def _exec_within(channel: paramiko.Channel, command: str, limit: float) -> bool:
    """Send the exec request; False when the host did not answer it within `limit`.

    paramiko's exec_command waits for the reply with no timeout at all (the channel's
    settimeout covers reads only), so a host that accepts the session and never answers
    would hold the prune thread for ever. Closing the transport wakes that wait.
    """
    import paramiko

    unanswered = threading.Event()
    transport = channel.get_transport()

    def give_up() -> None:
        unanswered.set()
        transport.close()

    timer = threading.Timer(limit, give_up)
    timer.daemon = True
    timer.start()
    try:
        channel.exec_command(command)
    except (paramiko.SSHException, EOFError, OSError):
        # closing the transport ends the wait with whatever paramiko saw: a reset or a
        # closed socket is an OSError. Unless the timer closed it, the caller records it
        if not unanswered.is_set():
            raise
    finally:
        timer.cancel()
    # a timer that fired just after the answer has closed the transport all the same
    return not unanswered.is_set()


def _drain(
    channel: paramiko.Channel,
    stdout: Tail,
    stderr: Tail,
    deadline: float,
) -> int | None:
    """Read both streams until the command exits and they end; None when the deadline passed
    first. sshd may send the exit status before the last of the output (a prune's summary
    line) and its EOF: the output ends at the EOF, or when the channel closes."""
    while True:
        progressed = False
        while channel.recv_ready():
            stdout.feed(channel.recv(_READ_CHUNK))
            progressed = True
        while channel.recv_stderr_ready():
            stderr.feed(channel.recv_stderr(_READ_CHUNK))
            progressed = True
        ended = channel.eof_received or channel.closed
        if (
            channel.exit_status_ready()
            and ended
            and not (channel.recv_ready() or channel.recv_stderr_ready())
        ):
            return channel.recv_exit_status()
        if time.monotonic() >= deadline:
            return None
        if not progressed:
            time.sleep(_IDLE_WAIT_S)


class SSHSession:
    """The commands of one run on one SSH connection, opened by the first command; `run`
    never raises. A connection that could not be opened, or was lost, is not opened again
    within the session (whether a lost command ran is unknown): every later command comes
    back at once with why. A command that outlives its limit ends alone; the connection
    stays for the next."""

    def __init__(self, target: Target):
        self.target = target
        self.connections = 0
        self._client: paramiko.SSHClient | None = None
        # why no command can run any more: (error kind, message, whether it logged in)
        self._broken: tuple[str, str, bool] | None = None

    def __enter__(self) -> SSHSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        """False once the connection failed or was lost: later commands cannot run."""
        return self._broken is None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def execute(self, command: str, timeout_s: float | None = None) -> Execution:
        """`command` within `timeout_s` (default: the target policy's timeout), counted from
        this call: the first command's includes connecting."""
        endpoint = self.target.ssh
        limit = self.target.policy.timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        stdout, stderr = Tail(), Tail()

        def done(
            rc: int | None, kind: str | None = None, error: str | None = None, logged_in=True
        ) -> Execution:
            elapsed = time.monotonic() - started
            known = ErrorKind(kind) if kind else None
            return Execution(rc, stdout.text(), stderr.text(), elapsed, known, error, logged_in)

        def broken(kind: str, message: str, more: str = "", logged_in: bool = True) -> Execution:
            """This command failed with the connection: no later one is tried."""
            self._broken = (kind, message, logged_in)
            self.close()
            return done(None, kind, message + more, logged_in)

        if self._broken is not None:
            kind, message, logged_in = self._broken
            return done(None, kind, f"not run: earlier in this run, {message}", logged_in)
        if self._client is None:
            try:
                self._client = _connect(endpoint)
            except SSHFailure as failure:
                return broken(failure.kind, str(failure), logged_in=False)
            self.connections += 1
        host = f"{endpoint.address}:{endpoint.port}"

        def lost(reason: str) -> Execution:
            message = f"{host}: the connection was lost before the command finished ({reason})"
            return broken("ssh_error", message, "; whether the prune ran is unknown")

        try:
            transport = self._client.get_transport()
            assert transport is not None
            step = endpoint.connect_timeout_s
            channel = transport.open_session(timeout=step)
            if not _exec_within(channel, command, step):
                message = f"{host} accepted the session but did not answer the command within"
                return broken("exec_timeout", f"{message} {step}s", "; gave up")
            rc = _drain(channel, stdout, stderr, started + limit)
            if rc is None:
                channel.close()
                return done(None, "timeout", f"timeout: no result within {limit}s; gave up")
            reason = _lost_before_exit(transport, rc)
            if reason is not None:
                return lost(reason)
            channel.close()
            return done(rc)
        except (OSError, EOFError) as error:  # a reset or a close while opening or asking
            return lost(_reason(error))
        except Exception as error:  # whatever else paramiko raises mid-run
            return broken("ssh_error", _reason(error))


class SSHRunner:
    """Runs commands on a target's build host: `session` for the commands of one run on
    one connection, `execute` for a single command on a connection of its own."""

    def session(self, target: Target) -> SSHSession:
        return SSHSession(target)

    def execute(self, target: Target, command: str) -> Execution:
        """`command` on `target`, within its policy's timeout; never raises."""
        with self.session(target) as session:
            return session.execute(command)
