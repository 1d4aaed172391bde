"""A real Apache Kafka 4.1.1 broker (single-node KRaft, broker+controller) on 127.0.0.1.

The jars come from Maven Central through `mvn` (see pom.xml beside this file) and are
cached under `<cache_dir>/kafka-4.1.1/libs`; the broker runs with the system `java`.
Used by `expmon demo`, `expmon bench` and the integration tests.

With `secure=True` it also listens with TLS: an SSL listener and a SASL_SSL listener
(SCRAM-SHA-512, users created when the storage is formatted), both with a certificate
from a throw-away CA (`tls.py`). The PLAINTEXT listener stays (inter-broker traffic and
the readiness probe use it).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

from kafka import KafkaAdminClient

from expmon.errors import LocalKafkaError
from expmon.local.kafka.tls import TlsMaterial, make_tls_material
from expmon.local.procs import free_port, stop_process

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
PACKAGE_DIR = Path(__file__).resolve().parent
POM_PATH = PACKAGE_DIR / "pom.xml"
LOG4J_CONFIG = PACKAGE_DIR / "log4j2.properties"
MARKER_NAME = ".expmon-fetched"
# Jars whose absence means the cache is unusable even if a marker says otherwise.
REQUIRED_JARS = (
    f"kafka_2.13-{KAFKA_VERSION}.jar",
    f"kafka-clients-{KAFKA_VERSION}.jar",
    f"kafka-server-{KAFKA_VERSION}.jar",
)
LOG_TAIL_LINES = 40
STOP_GRACE_SECONDS = 20.0

SCRAM_MECHANISM = "SCRAM-SHA-512"
SecureProtocol = Literal["SSL", "SASL_SSL"]

JAVA_HINT = "install a Java 17+ runtime, e.g. apt-get install openjdk-17-jre-headless"
MAVEN_HINT = "install Maven, e.g. apt-get install maven"


# --------------------------------------------------------------------------- helpers


def kafka_home(cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    # The marker records which pom produced the jars, so editing pom.xml re-fetches.
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def jars_present(libs: Path) -> bool:
    marker = libs / MARKER_NAME
    if not marker.is_file() or marker.read_text().strip() != _pom_digest():
        return False
    return all((libs / jar).is_file() for jar in REQUIRED_JARS)


def find_java() -> str:
    """Path of the `java` to run: $JAVA_HOME/bin/java if set and present, else PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise LocalKafkaError(f"`java` was not found on PATH: {JAVA_HINT}")
    return found


def find_mvn() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise LocalKafkaError(
            f"`mvn` was not found on PATH; it is needed once to fetch the Kafka jars: {MAVEN_HINT}"
        )
    return found


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Two processes (e.g. `expmon demo` and a test run) may fetch at once; serialize them.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(cache_dir: Path) -> Path:
    """Return `<cache_dir>/kafka-4.1.1/libs`, fetching the jars with mvn if not yet there."""
    home = kafka_home(cache_dir)
    libs = home / "libs"
    if jars_present(libs):
        return libs
    with _file_lock(home / ".fetch.lock"):
        if jars_present(libs):  # another process fetched while we waited for the lock
            return libs
        mvn = find_mvn()
        # Fetch into a sibling dir and swap it in, so an interrupted fetch never leaves a
        # half-filled libs/ that a later run would trust.
        staging = Path(tempfile.mkdtemp(prefix="libs-fetch-", dir=home))
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ]
        logger.info("fetching Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise LocalKafkaError(f"fetching the Kafka jars failed: {exc}") from exc
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr).strip().splitlines()
            raise LocalKafkaError(
                f"`{' '.join(cmd)}` exited with {result.returncode}; Maven Central must be"
                " reachable (or the jars already in ~/.m2)",
                "\n".join(output[-LOG_TAIL_LINES:]),
            )
        missing = [jar for jar in REQUIRED_JARS if not (staging / jar).is_file()]
        if missing:
            shutil.rmtree(staging, ignore_errors=True)
            raise LocalKafkaError(f"Maven finished but these jars are missing: {missing}")
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        (staging / MARKER_NAME).write_text(_pom_digest() + "\n")
        if libs.exists():
            shutil.rmtree(libs)
        staging.rename(libs)
        logger.info("Kafka jars ready in %s", libs)
        return libs


def new_cluster_id() -> str:
    """A KRaft cluster id: the 16 bytes of a uuid4 as 22 chars of unpadded base64url."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def free_port_except(taken: set[int], host: str = HOST) -> int:
    port = free_port(host)
    while port in taken:
        port = free_port(host)
    return port


def port_in_use(port: int, host: str = HOST) -> bool:
    """True if something listens on host:port (a bind with SO_REUSEADDR fails only then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as Java's ServerSocket uses it: TIME_WAIT leftovers don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def _port_accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM-SHA-512 user the SASL_SSL listener accepts (created at format time)."""

    name: str
    password: str


@dataclass(frozen=True)
class SecureListeners:
    """The TLS listeners of a secure broker: their ports and the TLS material."""

    ssl_port: int
    sasl_ssl_port: int
    tls: TlsMaterial


def _secure_properties(secure: SecureListeners) -> dict[str, str]:
    return {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(secure.tls.keystore),
        "ssl.keystore.password": secure.tls.password,
        "ssl.key.password": secure.tls.password,
        "ssl.client.auth": "none",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
    }


def render_server_properties(
    *,
    port: int,
    controller_port: int,
    log_dir: Path,
    node_id: int = 1,
    host: str = HOST,
    secure: SecureListeners | None = None,
    group_initial_rebalance_delay_ms: int = 0,
) -> str:
    """The server.properties of a combined broker+controller single-node KRaft cluster.

    `group_initial_rebalance_delay_ms`: 0 for tests and the demo (their consumers start
    right away; Kafka's default 3 s only slows them); the bench gives Kafka's 3000, so that
    the processes of `expmon worker --processes N` join a new group in one generation.
    """
    listeners = [f"PLAINTEXT://{host}:{port}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if secure is not None:
        listeners += [
            f"SSL://{host}:{secure.ssl_port}",
            f"SASL_SSL://{host}:{secure.sasl_ssl_port}",
        ]
        protocols += ["SSL:SSL", "SASL_SSL:SASL_SSL"]
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": ",".join([*listeners, f"CONTROLLER://{host}:{controller_port}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": str(log_dir),
        # One broker: every internal topic must accept replication factor 1.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": str(group_initial_rebalance_delay_ms),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        # Fewer threads than the defaults: the broker shares 2 cores with the worker.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
    }
    if secure is not None:
        props.update(_secure_properties(secure))
    lines = ["# written by expmon.local.kafka; regenerated on every start"]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            # The tail is all we show; reading the last 64 KiB is plenty for 40 lines.
            handle.seek(max(0, size - 65536))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]


# --------------------------------------------------------------------------- broker


class LocalKafka:
    """One Kafka broker process; `start()` blocks until it serves metadata requests."""

    def __init__(
        self,
        cache_dir: Path,
        data_dir: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        secure: bool = False,
        scram_users: Sequence[ScramUser] = (),
        group_initial_rebalance_delay_ms: int = 0,
    ) -> None:
        if scram_users and not secure:
            raise LocalKafkaError("SCRAM users need the SASL_SSL listener: pass secure=True")
        self.cache_dir = cache_dir
        self.secure = secure
        self.scram_users = tuple(scram_users)
        self._secure: SecureListeners | None = None
        self._requested_data_dir = data_dir
        self._requested_port = port
        self._requested_controller_port = controller_port
        self.heap = heap
        self.group_initial_rebalance_delay_ms = group_initial_rebalance_delay_ms
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._port: int | None = None
        self._controller_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    # -- properties ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise LocalKafkaError("the local broker is not started")
        return self._port

    @property
    def controller_port(self) -> int:
        if self._controller_port is None:
            raise LocalKafkaError("the local broker is not started")
        return self._controller_port

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _listeners(self) -> SecureListeners:
        if self._secure is None:
            raise LocalKafkaError(
                "the local broker has no TLS listeners (start it with secure=True)"
                if not self.secure
                else "the local broker is not started"
            )
        return self._secure

    @property
    def ssl_bootstrap(self) -> str:
        """The SSL listener (TLS, no authentication)."""
        return f"{HOST}:{self._listeners().ssl_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """The SASL_SSL listener (TLS, SCRAM-SHA-512)."""
        return f"{HOST}:{self._listeners().sasl_ssl_port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) clients of the TLS listeners trust."""
        return self._listeners().tls.ca_file

    def client_env(self, protocol: SecureProtocol, user: ScramUser | None = None) -> dict[str, str]:
        """`EXPMON_KAFKA_*` variables for a client of a TLS listener (with `user` for
        SASL_SSL: pass any name and password to try a wrong one)."""
        env = {
            "EXPMON_KAFKA_SECURITY_PROTOCOL": protocol,
            "EXPMON_KAFKA_SSL_CAFILE": str(self.ca_file),
        }
        if protocol == "SSL":
            env["EXPMON_KAFKA_BOOTSTRAP"] = self.ssl_bootstrap
            return env
        if user is None:
            raise LocalKafkaError("SASL_SSL needs a user (name and password)")
        env.update(
            EXPMON_KAFKA_BOOTSTRAP=self.sasl_ssl_bootstrap,
            EXPMON_KAFKA_SASL_MECHANISM=SCRAM_MECHANISM,
            EXPMON_KAFKA_SASL_USERNAME=user.name,
            EXPMON_KAFKA_SASL_PASSWORD=user.password,
        )
        return env

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise LocalKafkaError("the local broker is not started")
        return self._data_dir

    @property
    def process_log(self) -> Path:
        """stdout/stderr of the JVM (WARN+ log lines and JVM failures)."""
        return self.data_dir / "logs" / "process.log"

    @property
    def server_log(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self._data_dir is None:
            return ""
        out = _tail(self.process_log, lines // 2)
        server = _tail(self.server_log, lines)
        parts = []
        if out:
            parts.append("[process output]\n" + "\n".join(out))
        if server:
            parts.append(f"[{self.server_log}]\n" + "\n".join(server))
        return "\n".join(parts)

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        if self.running:
            return
        if self._proc is not None:
            self.stop()  # a broker that died since: release its log handle and temp dir first
        java = find_java()  # before any fetch: without java nothing below can work
        libs = ensure_jars(self.cache_dir)
        self._pick_ports()
        self._prepare_data_dir()
        try:
            if self.secure:
                ssl_port = free_port_except({self.port, self.controller_port})
                sasl_port = free_port_except({self.port, self.controller_port, ssl_port})
                tls = make_tls_material(self.data_dir / "tls")
                self._secure = SecureListeners(ssl_port, sasl_port, tls)
            props = self._write_config()
            self._format_storage(java, libs, props)
            self._launch(java, libs, props)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        logger.info("local Kafka %s ready at %s (pid %s)", KAFKA_VERSION, self.bootstrap, self.pid)

    def stop(self) -> None:
        """SIGTERM the broker's process group, SIGKILL after 20 s; safe to call twice."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None:
            self._terminate(proc)
        if self._output is not None:
            self._output.close()
            self._output = None
        self._secure = None
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
            self._owns_data_dir = False

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; data dir and ports stay for `start()`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # A restart must come back where clients look for it, on the same data.
        self._requested_port, self._requested_controller_port = self._port, self._controller_port
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        if self._output is not None:
            self._output.close()
            self._output = None
        logger.info("local Kafka (pid %s) killed", proc.pid)

    # -- internals ----------------------------------------------------------

    def _pick_ports(self) -> None:
        for requested, name in (
            (self._requested_port, "port"),
            (self._requested_controller_port, "controller port"),
        ):
            if requested is not None and port_in_use(requested):
                raise LocalKafkaError(
                    f"cannot start the local Kafka broker: {name} {requested} on {HOST} is"
                    " already in use (another broker or program listens there; choose"
                    " another port or stop it)"
                )
        self._port = self._requested_port or free_port()
        cport = self._requested_controller_port or free_port()
        while cport == self._port:
            cport = free_port()
        self._controller_port = cport

    def _prepare_data_dir(self) -> None:
        if self._data_dir is not None:
            return
        if self._requested_data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="expmon-kafka-"))
            self._owns_data_dir = True
        else:
            self._data_dir = self._requested_data_dir
            self._data_dir.mkdir(parents=True, exist_ok=True)
        (self._data_dir / "logs").mkdir(exist_ok=True)

    def _write_config(self) -> Path:
        props = self.data_dir / "server.properties"
        props.write_text(
            render_server_properties(
                port=self.port,
                controller_port=self.controller_port,
                log_dir=self.data_dir / "kraft-logs",
                secure=self._secure,
                group_initial_rebalance_delay_ms=self.group_initial_rebalance_delay_ms,
            )
        )
        return props

    def _java_cmd(self, java: str, libs: Path, log_dir: Path, *jvm_opts: str) -> list[str]:
        return [
            java,
            *jvm_opts,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={log_dir}",
            "-cp",
            f"{libs}/*",  # the JVM expands the wildcard itself; no shell involved
        ]

    def _format_storage(self, java: str, libs: Path, props: Path) -> None:
        if (self.data_dir / "kraft-logs" / "meta.properties").exists():
            # A caller-supplied data_dir from an earlier run (a restart): keep its data. The
            # tool would refuse it anyway, since each format draws a new cluster id.
            return
        # --ignore-formatted: a caller-supplied data_dir from an earlier run keeps its data.
        cmd = [
            # The format tool is short-lived; a small heap keeps it from claiming 1/4 of RAM.
            # Its own log dir: its config dump would otherwise bury the broker's startup errors.
            *self._java_cmd(java, libs, self.data_dir / "logs" / "format", "-Xmx256m"),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--ignore-formatted",
            # one argument: an id may start with "-", which argparse would take for an option
            f"--cluster-id={new_cluster_id()}",
            "-c",
            str(props),
        ]
        for user in self.scram_users:
            cmd += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user.name},password={user.password}]"]
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=120, check=False, cwd=self.data_dir
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LocalKafkaError(f"formatting the Kafka storage failed: {exc}") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise LocalKafkaError(
                f"formatting the Kafka storage in {self.data_dir} failed (exit code"
                f" {result.returncode})",
                "\n".join(output[-LOG_TAIL_LINES:]),
            )

    def _launch(self, java: str, libs: Path, props: Path) -> None:
        cmd = [
            *self._java_cmd(
                java, libs, self.data_dir / "logs", f"-Xmx{self.heap}", f"-Xms{self.heap}"
            ),
            "kafka.Kafka",
            str(props),
        ]
        self._output = self.process_log.open("ab")
        # Own session/process group: Ctrl-C in the terminal must not reach the JVM before
        # we stop it in order, and stop() can signal the whole group.
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,
        )
        # A normal interpreter exit must not leave a JVM behind.
        atexit.register(self.stop)
        logger.debug("started Kafka pid %s: %s", self._proc.pid, " ".join(cmd))

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "the port never accepted a connection"
        while True:
            proc = self._proc
            if proc is None:
                raise LocalKafkaError("the local broker was stopped while starting")
            code = proc.poll()
            if code is not None:
                raise LocalKafkaError(
                    f"the Kafka broker exited with code {code} during startup"
                    f" (port {self.port}, controller port {self.controller_port})",
                    self.log_tail(),
                )
            if all(_port_accepts(p) for p in self._ports()):
                error = self._metadata_error()
                if error is None:
                    return
                last_error = error
            if time.monotonic() >= deadline:
                raise LocalKafkaError(
                    f"the Kafka broker on port {self.port} was not ready within {timeout:g} s"
                    f" ({last_error})",
                    self.log_tail(),
                )
            time.sleep(0.25)

    def _ports(self) -> list[int]:
        if self._secure is None:
            return [self.port]
        return [self.port, self._secure.ssl_port, self._secure.sasl_ssl_port]

    def _metadata_error(self) -> str | None:
        """None if a kafka-python metadata request succeeds, else why not."""
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="expmon-local-kafka-probe",
                request_timeout_ms=5000,
            )
        except Exception as exc:  # kafka-python raises many types here; all mean "not yet"
            return f"metadata request failed: {exc!r}"
        try:
            admin.describe_cluster()
        except Exception as exc:
            return f"metadata request failed: {exc!r}"
        finally:
            admin.close()
        return None

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        # start_new_session made the JVM its group leader: stop the whole group
        stop_process(proc, "Kafka", grace_s=STOP_GRACE_SECONDS, group=True)
        logger.info("local Kafka (pid %s) stopped", proc.pid)


__all__ = [
    "KAFKA_VERSION",
    "LocalKafka",
    "ScramUser",
    "SecureListeners",
    "ensure_jars",
    "find_java",
    "find_mvn",
    "new_cluster_id",
    "port_in_use",
    "render_server_properties",
]
