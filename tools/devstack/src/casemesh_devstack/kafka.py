"""A single-node Apache Kafka broker in KRaft combined mode, for development and tests.

The broker runs from the Maven artifacts (no distribution tarball): the jars are
fetched once with ``mvn dependency:copy-dependencies`` into a cache directory and
the JVM is started with ``java -cp '<cache>/libs/*' kafka.Kafka``, the same main
class that Kafka's own scripts use.  Everything else lives under one directory:
``data/`` (the log dir), ``server.properties``, ``log4j2.properties`` and
``logs/`` (``server.log`` from log4j, ``kafka.out`` for the JVM's own output).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from casemesh_devstack._proc import cmdline, kill_pid, pid_alive, spawn, tail

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
# Kafka 4 logs through log4j2 (it already depends on log4j-core); this binds its
# slf4j 1.7 calls to it.  Keep the version equal to the log4j-core Kafka pulls in.
LOG4J_VERSION = "2.24.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

POM_XML = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>casemesh</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>{DEPENDENCY_PLUGIN_VERSION}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""

_READY_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 30.0
_TOPIC_ALREADY_EXISTS = 36

T = TypeVar("T")


class KafkaError(RuntimeError):
    """The local Kafka broker could not be fetched, started, used or stopped."""


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaError("java not found; Kafka needs Java 17+ (apt-get install openjdk-17-jre)")
    return java


def _random_cluster_id() -> str:
    # Same shape as `kafka-storage.sh random-uuid`: 16 random bytes, base64url, no padding;
    # Kafka rejects ids that start with '-', so draw again in that case.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from async code (e.g. a pytest fixture): use a private loop in a thread.
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="casemesh-kafka-wait")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class LocalKafka:
    """One KRaft broker+controller rooted at ``root``, listening on 127.0.0.1:port."""

    def __init__(self, root: Path, port: int, controller_port: int, cache_dir: Path) -> None:
        self.root = Path(root).absolute()
        self.port = port
        self.controller_port = controller_port
        self.cache_dir = Path(cache_dir).absolute()
        self._proc: subprocess.Popen[bytes] | None = None

    # -- layout ---------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def log_path(self) -> Path:
        """The broker's log4j log."""
        return self.log_dir / "server.log"

    @property
    def out_path(self) -> Path:
        """The JVM's stdout/stderr (startup failures land here)."""
        return self.log_dir / "kafka.out"

    @property
    def config_path(self) -> Path:
        return self.root / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    # -- jars -----------------------------------------------------------------

    def ensure_jars(self) -> Path:
        """Fetch the broker's jars into ``<cache_dir>/libs`` unless already there."""
        libs = self.cache_dir / "libs"
        marker = self.cache_dir / ".complete"
        digest = hashlib.sha256(POM_XML.encode()).hexdigest()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Parallel test sessions may share one cache: only one of them fetches.
        with (self.cache_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if marker.exists() and marker.read_text().strip() == digest and any(libs.glob("*.jar")):
                return libs
            mvn = shutil.which("mvn")
            if mvn is None:
                raise KafkaError(
                    "Maven (mvn) is needed once to fetch the Kafka jars; "
                    "install it with `apt-get install maven`"
                )
            pom = self.cache_dir / "pom.xml"
            pom.write_text(POM_XML)
            shutil.rmtree(libs, ignore_errors=True)
            mvn_log = self.cache_dir / "mvn.log"
            log.info("fetching Kafka %s jars into %s (once)", KAFKA_VERSION, libs)
            with mvn_log.open("wb") as out:
                rc = subprocess.run(
                    [
                        mvn,
                        "-q",
                        "-B",
                        "-f",
                        str(pom),
                        "dependency:copy-dependencies",
                        f"-DoutputDirectory={libs}",
                    ],
                    cwd=self.cache_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                ).returncode
            if rc != 0 or not any(libs.glob("kafka_2.13-*.jar")):
                raise KafkaError(
                    f"mvn could not fetch the Kafka jars (exit {rc}):\n{tail(mvn_log)}"
                )
            marker.write_text(digest + "\n")
            return libs

    # -- configuration --------------------------------------------------------

    def _server_properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One broker: every internal topic must get by with one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # Fewer offsets partitions make the first consumer group join quicker.
            "offsets.topic.num.partitions": "10",
            "num.partitions": "3",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Two cores on a dev box: don't spawn the server-sized thread pools.
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _log4j_properties(self) -> str:
        return (
            "status = warn\n"
            # The broker's own shutdown hook outlives log4j's; flushing per line suffices.
            "shutdownHook = disable\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_path}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            # Per-request and state-change chatter drowns out what matters.
            "logger.request.name = kafka.request.logger\n"
            "logger.request.level = WARN\n"
            "logger.state.name = state.change.logger\n"
            "logger.state.level = WARN\n"
        )

    def _java_argv(self, libs: Path, main: str, *args: str) -> list[str]:
        return [
            _java(),
            "-Xmx512m",
            "-Xms256m",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    # -- lifecycle ------------------------------------------------------------

    def _kill_leftover(self) -> None:
        """Stop a broker left running on this directory by a Python that was killed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        argv = cmdline(pid)
        if pid_alive(pid) and "kafka.Kafka" in argv and str(self.config_path) in argv:
            log.info("stopping leftover Kafka broker (pid %d) on %s", pid, self.root)
            kill_pid(pid, _STOP_TIMEOUT_S)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def _format_storage(self, libs: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        # A log dir without meta.properties is a half-finished format: start over.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        argv = self._java_argv(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _random_cluster_id(),
            "-c",
            str(self.config_path),
        )
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=self.root)
        if proc.returncode != 0:
            raise KafkaError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")
        log.info("formatted Kafka storage in %s", self.data_dir)

    def start(self) -> None:
        """Start the broker (formatting storage on first use) and wait until it answers."""
        if self.is_running():
            return
        libs = self.ensure_jars()
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self._kill_leftover()
        self.config_path.write_text(self._server_properties())
        (self.root / "log4j2.properties").write_text(self._log4j_properties())
        self._format_storage(libs)
        argv = self._java_argv(libs, "kafka.Kafka", str(self.config_path))
        with self.out_path.open("ab") as out:
            # Own session: a terminal's Ctrl-C must not stop the broker before the
            # services that use it; and the kernel stops it when we die, even by kill -9.
            self._proc = spawn(
                argv,
                death_signal=signal.SIGTERM,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        atexit.register(self.stop)
        try:
            _run_blocking(self.wait_ready(_READY_TIMEOUT_S))
        except BaseException:
            self.stop()
            raise
        log.info("Kafka ready on %s", self.bootstrap)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _failure(self, why: str) -> KafkaError:
        log_tail = tail(self.log_path, 400).splitlines()
        # The cause is usually an ERROR line buried under pages of orderly shutdown.
        errors = [line for line in log_tail if " ERROR " in line or " FATAL " in line][-10:]
        return KafkaError(
            f"Kafka broker on {self.bootstrap} {why}\n"
            + (f"--- errors in {self.log_path} ---\n" + "\n".join(errors) + "\n" if errors else "")
            + f"--- end of {self.log_path} ---\n"
            + "\n".join(log_tail[-20:])
            + f"\n--- {self.out_path} ---\n{tail(self.out_path, 15)}"
        )

    async def wait_ready(self, limit_s: float = _READY_TIMEOUT_S) -> None:
        """Return once the broker answers a metadata request with itself as a live node."""
        deadline = time.monotonic() + limit_s
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise self._failure(f"exited with code {self._proc.returncode} during startup")
            if time.monotonic() > deadline:
                raise self._failure(f"was not ready after {limit_s:.0f} s")
            # A plain connect first: aiokafka logs every refused connection as an error.
            if await _port_open(self.port):
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=5000
                )
                try:
                    await admin.start()
                    cluster = await admin.describe_cluster()
                    if cluster.get("brokers") and cluster.get("controller_id", -1) >= 0:
                        return
                except Exception as exc:
                    log.debug("Kafka not ready yet: %r", exc)
                finally:
                    await admin.close()
            await asyncio.sleep(0.25)

    async def create_topics(
        self,
        names: list[str],
        partitions: int = 3,
        replication_factor: int = 1,
        configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Create the topics that don't exist yet (each with its `configs`,
        if given: e.g. `casemesh.topics.CONFIGS`) and wait until all their
        partitions have leaders (so a producer right after this does not hit
        LEADER_NOT_AVAILABLE)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30000)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [name for name in names if name not in existing]
            if missing:
                response = await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            partitions,
                            replication_factor,
                            topic_configs=dict((configs or {}).get(name, {})),
                        )
                        for name in missing
                    ]
                )
                for topic_error in response.topic_errors:
                    topic, code = topic_error[0], topic_error[1]
                    message = topic_error[2] if len(topic_error) > 2 else ""
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        raise KafkaError(f"creating topic {topic} failed: code {code} {message}")
                log.info("created Kafka topics %s", ", ".join(missing))
            # Topics a run before made (the broker keeps its data across
            # runs): their configs set as now told, so what they keep holds.
            kept = [n for n in names if n in existing and (configs or {}).get(n)]
            if kept:
                resources = [
                    ConfigResource(ConfigResourceType.TOPIC, n, dict((configs or {})[n]))
                    for n in kept
                ]
                for response in await admin.alter_configs(resources):
                    for code, message, _, topic in response.resources:
                        if code != 0:
                            raise KafkaError(f"configuring topic {topic} failed: {code} {message}")
            await self._wait_for_leaders(admin, names)
        finally:
            await admin.close()

    async def _wait_for_leaders(self, admin: AIOKafkaAdminClient, names: list[str]) -> None:
        deadline = time.monotonic() + 30
        while True:
            topics = await admin.describe_topics(names)
            pending = [
                t["topic"]
                for t in topics
                if t["error_code"] != 0
                or not t["partitions"]
                or any(p["leader"] < 0 for p in t["partitions"])
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise KafkaError(f"topics without partition leaders after 30 s: {pending}")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM the broker's process group, wait up to 30 s, then SIGKILL it."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("Kafka did not stop within %.0f s; killing it", _STOP_TIMEOUT_S)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.info("Kafka on %s stopped", self.bootstrap)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def live_broker_pid(root: Path) -> int | None:
    """The pid of a running broker for the Kafka dir ``root``, if there is one."""
    root = Path(root).absolute()
    try:
        pid = int((root / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) and "kafka.Kafka" in cmdline(pid) else None
