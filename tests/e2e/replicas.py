"""Second replicas of the stack's processes, as a second pod of a service
would run on Kubernetes, and reading their metrics."""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass

import urllib3
from prometheus_client.parser import text_string_to_metric_families

from casemesh_devstack.ports import free_port
from tests.conftest import Stack

DELAY = 2.0  # readiness down, still answering
GRACE = 10.0  # in-flight calls may finish


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples at a Prometheus endpoint (0 if absent)."""
    text = urllib3.request("GET", url, timeout=5).data.decode()
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


@dataclass
class Replica:
    """A second copy of one of the stack's processes, on its own ports."""

    stack: Stack
    of: str
    name: str
    grpc_addr: str
    metrics_url: str

    @classmethod
    def start(cls, stack: Stack, of: str, **env: str) -> Replica:
        sup = stack.supervisor
        argv, base = sup.command(of)
        name = f"{of}-b-{uuid.uuid4().hex[:4]}"
        grpc_addr = f"127.0.0.1:{free_port()}"
        metrics_addr = f"127.0.0.1:{free_port()}"
        sup.start(
            name,
            argv,
            {
                **base,
                "CASEMESH_GRPC_ADDR": grpc_addr,
                # Only the gateway reads it; another port, as on another pod.
                "CASEMESH_HTTP_ADDR": f"127.0.0.1:{free_port()}",
                "CASEMESH_METRICS_ADDR": metrics_addr,
                "CASEMESH_SHUTDOWN_DELAY_SECONDS": str(DELAY),
                "CASEMESH_SHUTDOWN_GRACE_SECONDS": str(GRACE),
                "CASEMESH_SERVICE_NAME": name,
                **env,
            },
        )
        return cls(stack, of, name, grpc_addr, f"http://{metrics_addr}/metrics")

    def log(self) -> str:
        return self.stack.supervisor.log_path(self.name).read_text()

    def terminate(self) -> float:
        """SIGTERM; returns the moment it was sent."""
        sent = time.monotonic()
        self.stack.supervisor.kill(self.name, signal.SIGTERM)
        return sent

    def wait_exit(self, timeout: float) -> tuple[int | None, float]:
        """(exit code, moment it was seen gone), or (None, …) if still running."""
        sup = self.stack.supervisor
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = sup.returncode(self.name)
            if code is not None:
                return code, time.monotonic()
            time.sleep(0.05)
        return None, time.monotonic()

    def cleanup(self) -> None:
        sup = self.stack.supervisor
        if sup.is_running(self.name):
            sup.stop(self.name)
