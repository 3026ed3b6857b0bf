"""docker-compose.yml and deploy/k8s describe the system `./dev up` runs: the same
processes with the same commands, databases and topics (stack.service_specs,
stack.DATABASES, stack.TOPICS are the one description); and every Kubernetes
container is locked down, probed, observable and stops gracefully.

Reads the YAML files directly (no kubectl): the base, plus what overlays/dev and
overlays/prod add. `./dev deploy-check` renders and schema-checks the same files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import promql_parser
import pytest
import yaml
from pydantic import ValidationError

from casemesh import topics as casemesh_topics
from casemesh.platform.forgetting import ErasureFollower, erasure_group
from casemesh.platform.identity import new_signing_key, verify_key_of, verify_keys
from casemesh.platform.personal.postgres import SCHEMA as KEYS_SCHEMA
from casemesh.platform.settings import load as settings_load
from casemesh_casequeue.settings import QueueSettings
from casemesh_devstack import stack
from casemesh_devstack.kafka import LocalKafka
from casemesh_devstack.postgres import LocalPostgres
from casemesh_devstack.supervisor import grace_period
from casemesh_evidence.lifecycle import GROUP as EVIDENCE_GROUP
from casemesh_evidence.settings import EvidenceSettings
from casemesh_gateway.settings import GatewaySettings
from casemesh_gateway.web import CONTENT_SECURITY_POLICY, content_security_policy
from casemesh_notifier.settings import RECORD_MARGIN_S, NotifierServiceSettings, NotifierSettings
from casemesh_reports.settings import ConsumerSettings as ReportsConsumerSettings
from scripts.deploy_check import SETTINGS, Render, Report, check_settings
from tests.support import personal_env

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
METRICS_PORTS = {"metrics": 9464, "relay-metrics": 9465}
# Spec variables Kubernetes and compose leave out on purpose: tests' clock file;
# the gateway's self-service page and console from the working tree and its development
# sign-in (tokens for anyone, signed with the HS256 secret), local runs only.
TEST_ONLY = {
    "CASEMESH_CLOCK_OFFSET_FILE",
    "PYTHONUNBUFFERED",
    "CASEMESH_WEB_ROOT",
    "CASEMESH_CONSOLE_ROOT",
    "CASEMESH_DEV_SIGN_IN",
}


# -- reading the files -----------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@dataclass
class Kustomized:
    """The objects and generated ConfigMaps/Secrets of a kustomization, without kustomize."""

    objects: list[dict[str, Any]]
    configmaps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]


def _generated(folder: Path, entries: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for entry in entries:
        data: dict[str, str] = {}
        for literal in entry.get("literals", []):
            key, _, value = str(literal).partition("=")
            data[key] = value
        for env_file in entry.get("envs", []):
            for line in (folder / env_file).read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    data[key] = value
        for file in entry.get("files", []):
            key, _, name = str(file).rpartition("=")
            data[key or Path(name).name] = (folder / name).read_text()
        out[entry["name"]] = data
    return out


def kustomized(folder: Path) -> Kustomized:
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    result = Kustomized([], {}, {})
    for resource in spec.get("resources", []):
        path = folder / resource
        if path.is_dir():
            sub = kustomized(path)
            result.objects += sub.objects
            result.configmaps.update(sub.configmaps)
            result.secrets.update(sub.secrets)
        else:
            result.objects += load_docs(path)
    for name, data in _generated(folder, spec.get("configMapGenerator", [])).items():
        result.configmaps[name] = {**result.configmaps.get(name, {}), **data}
    for name, data in _generated(folder, spec.get("secretGenerator", [])).items():
        result.secrets[name] = {**result.secrets.get(name, {}), **data}
    return result


BASE = kustomized(K8S / "base")
DEV = kustomized(K8S / "overlays" / "dev")
PROD = kustomized(K8S / "overlays" / "prod")
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def image_entrypoint() -> list[str]:
    """The ENTRYPOINT of the Dockerfile's final stage."""
    lines = (REPO / "Dockerfile").read_text().splitlines()
    found = [json.loads(line.split(None, 1)[1]) for line in lines if line.startswith("ENTRYPOINT")]
    assert found, "the Dockerfile has no ENTRYPOINT"
    entry: list[str] = found[-1]
    return entry


ENTRYPOINT = image_entrypoint()


@dataclass
class Container:
    owner: dict[str, Any]  # the Deployment or CronJob
    pod: dict[str, Any]  # its pod template
    spec: dict[str, Any]

    @property
    def where(self) -> str:
        return (
            f"{self.owner['kind']}/{self.owner['metadata']['name']} container {self.spec['name']}"
        )

    @property
    def argv(self) -> list[str]:
        command: list[str] = self.spec.get("command") or ENTRYPOINT
        return [*command, *self.spec.get("args", [])]

    def env(self, k: Kustomized) -> dict[str, str | None]:
        """The container's environment by name: a value, or None for one from a Secret."""
        out: dict[str, str | None] = {}
        for ref in self.spec.get("envFrom", []):
            if "configMapRef" in ref:
                out.update(k.configmaps[ref["configMapRef"]["name"]])
            if "secretRef" in ref:
                out.update(dict.fromkeys(k.secrets.get(ref["secretRef"]["name"], {})))
        for env in self.spec.get("env", []):
            out[env["name"]] = env.get("value")
        return out

    def port(self, name: str) -> int | None:
        ports = {p.get("name"): p["containerPort"] for p in self.spec.get("ports", [])}
        return ports.get(name)


def containers(objects: list[dict[str, Any]]) -> Iterator[Container]:
    for obj in objects:
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]
        elif obj["kind"] == "CronJob":
            pod = obj["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            yield Container(obj, pod, c)


# -- the processes `./dev up` runs ----------------------------------------------------------


def specs() -> list[stack.ServiceSpec]:
    root = Path("/nonexistent/casemesh-test")
    return stack.service_specs(
        LocalPostgres(root / "pg", 5432),
        LocalKafka(root / "kafka", 9092, 9093, root / "cache"),
        ("127.0.0.1", 2525),
        "http://127.0.0.1:8025/sms",
        "x" * 40,
        identity_keys=stack.IdentityKeys.new(),
        gateway_addr=stack.GATEWAY_ADDR,
        gateway_http_addr=stack.GATEWAY_HTTP_ADDR,
        evidence_dir=root / "evidence",
        clock_offset_file=root / "clock",
    )


SPECS = specs()


def python_m(spec: stack.ServiceSpec) -> list[str]:
    """The spec's command as the image runs it: `python -m <module> [command]`."""
    assert spec.argv[1] == "-m", spec.argv
    return ["python", "-m", *spec.argv[2:]]


def k8s_container(spec: stack.ServiceSpec) -> Container:
    found = [c for c in containers(of_kind(BASE.objects, "Deployment")) if c.argv == python_m(spec)]
    assert len(found) == 1, f"{spec.name}: {len(found)} Kubernetes containers run {python_m(spec)}"
    return found[0]


def compose_service(spec: stack.ServiceSpec) -> tuple[str, dict[str, Any]]:
    found = []
    for name, service in COMPOSE["services"].items():
        if "image" not in service and "build" not in service:
            continue
        entry = service.get("entrypoint")
        command = service.get("command", [])
        argv = [*(entry if entry is not None else ENTRYPOINT), *command]
        if argv == python_m(spec):
            found.append((name, service))
    assert len(found) == 1, f"{spec.name}: {len(found)} compose services run {python_m(spec)}"
    return found[0]


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def db_of_url(url: str) -> str:
    return urlsplit(url).path.strip("/")


def clusters() -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in of_kind(BASE.objects, "Cluster")}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_process_runs_in_compose_and_kubernetes_with_the_same_command(
    spec: stack.ServiceSpec,
) -> None:
    container = k8s_container(spec)
    name, service = compose_service(spec)
    env = container.env(DEV)

    # Which database, Kafka or not, which gRPC port: the same in all three.
    if "CASEMESH_DATABASE_URL" in spec.env:
        db = db_of_url(spec.env["CASEMESH_DATABASE_URL"])
        assert db_of_url(service["environment"]["CASEMESH_DATABASE_URL"]) == db, name
        ref = next(e for e in container.spec["env"] if e["name"] == "CASEMESH_DATABASE_URL")
        secret = ref["valueFrom"]["secretKeyRef"]
        assert secret["key"] == "uri" and secret["name"].endswith("-app"), container.where
        cluster = clusters()[secret["name"].removesuffix("-app")]
        assert cluster["spec"]["bootstrap"]["initdb"]["database"] == db, container.where
        assert container.pod["metadata"]["labels"]["casemesh/database"] == db.removeprefix(
            "casemesh_"
        ), f"{container.where}: the NetworkPolicy of {cluster['metadata']['name']} must let it in"
    else:
        assert "CASEMESH_DATABASE_URL" not in env, container.where
    uses_kafka = "CASEMESH_KAFKA_BOOTSTRAP" in spec.env
    assert ("CASEMESH_KAFKA_BOOTSTRAP" in service.get("environment", {})) == uses_kafka, name
    assert ("CASEMESH_KAFKA_BOOTSTRAP" in env) == uses_kafka, container.where
    if uses_kafka:  # the NetworkPolicy of the Kafka cluster lets it in
        assert container.pod["metadata"]["labels"]["casemesh/kafka"] == "client", container.where
    if "CASEMESH_GRPC_ADDR" in spec.env:
        port = port_of(spec.env["CASEMESH_GRPC_ADDR"])
        assert port_of(service["environment"]["CASEMESH_GRPC_ADDR"]) == port, name
        assert env["CASEMESH_GRPC_ADDR"] == f"0.0.0.0:{port}", container.where
        assert container.port("grpc") == port, container.where
    else:
        assert container.port("grpc") is None, container.where
    if "CASEMESH_HTTP_ADDR" in spec.env:  # the gateway's Connect, gRPC-Web and uploads
        port = port_of(spec.env["CASEMESH_HTTP_ADDR"])
        assert port_of(service["environment"]["CASEMESH_HTTP_ADDR"]) == port, name
        assert f"127.0.0.1:{port}:{port}" in service["ports"], name
        assert env["CASEMESH_HTTP_ADDR"] == f"0.0.0.0:{port}", container.where
        assert container.port("http") == port, container.where
    else:
        assert container.port("http") is None, container.where
    assert env["CASEMESH_SERVICE_NAME"] == spec.env["CASEMESH_SERVICE_NAME"], container.where

    # Every setting the local stack gives the process, Kubernetes gives it too
    # (in overlays/dev; production's Secrets have the same keys).
    missing = {k for k in spec.env if k not in TEST_ONLY} - set(env)
    assert not missing, f"{container.where} lacks {sorted(missing)}"
    # And so does docker-compose.yml.
    missing = {k for k in spec.env if k not in TEST_ONLY} - set(service.get("environment", {}))
    assert not missing, f"compose service {name} lacks {sorted(missing)}"


def test_no_overlay_patch_takes_away_what_the_base_gives_a_container() -> None:
    """A container's envFrom has no merge key: a strategic-merge patch that
    lists it replaces the base's list (prod's evidence patch once dropped the
    identity keys and Kafka, and the pods crash-looped). Any such patch keeps
    every source the base gives; better, it adds with a JSON patch."""
    base = {
        (c.owner["metadata"]["name"], c.spec["name"]): c.spec
        for c in containers(of_kind(BASE.objects, "Deployment"))
    }
    folders = [*(K8S / "overlays").iterdir(), *(K8S / "components").iterdir()]
    for folder in folders:
        spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
        for patch in spec.get("patches", []):
            docs = load_docs(folder / patch["path"]) if "path" in patch else []
            pods = [
                d
                for d in of_kind(docs, "Deployment")
                if "containers" in d.get("spec", {}).get("template", {}).get("spec", {})
            ]
            for c in containers(pods):
                if "envFrom" not in c.spec:
                    continue
                given = base[(c.owner["metadata"]["name"], c.spec["name"])]["envFrom"]
                lost = [ref for ref in given if ref not in c.spec["envFrom"]]
                assert not lost, f"{folder.name}/{patch['path']}: {c.where} loses {lost}"


def test_kubernetes_runs_nothing_the_local_stack_does_not() -> None:
    expected = sorted(tuple(python_m(s)) for s in SPECS)
    casemesh = [
        tuple(c.argv)
        for c in containers(of_kind(BASE.objects, "Deployment"))
        if c.spec["image"] == "casemesh"
    ]
    assert sorted(casemesh) == expected


def test_the_gateway_reaches_every_service_through_its_headless_service() -> None:
    gateway = next(s for s in SPECS if s.name == "gateway")
    env = k8s_container(gateway).env(DEV)
    services = {
        s["spec"]["ports"][0]["port"]: s for s in of_kind(BASE.objects, "Service") if s["spec"]
    }
    targets = {k: v for k, v in gateway.env.items() if k.endswith("_TARGET")}
    assert len(targets) == 8
    for key, addr in targets.items():
        service = services[port_of(addr)]
        name = service["metadata"]["name"]
        assert env[key] == f"dns:///{name}:{port_of(addr)}", key
        assert service["spec"].get("clusterIP") == "None", f"{name} must be headless"
        spec = next(s for s in SPECS if s.env.get("CASEMESH_GRPC_ADDR") == addr)
        pod_labels = k8s_container(spec).pod["metadata"]["labels"]
        assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items()), name


def test_the_gateway_is_reachable_on_both_ports_and_never_signs_anyone_in() -> None:
    gateway = k8s_container(next(s for s in SPECS if s.name == "gateway"))
    service = next(
        s for s in of_kind(BASE.objects, "Service") if s["metadata"]["name"] == "gateway"
    )
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    policy = next(
        p for p in of_kind(BASE.objects, "NetworkPolicy") if p["metadata"]["name"] == "gateway"
    )
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    for name in ("grpc", "http"):
        assert ports[name]["targetPort"] == name
        assert ports[name]["port"] == gateway.port(name) and gateway.port(name) in allowed
    # The development sign-in mints a token for any name: `./dev up` only.
    for where, k in (("overlays/dev", DEV), ("overlays/prod", PROD)):
        for c in containers(k.objects):
            assert "CASEMESH_DEV_SIGN_IN" not in c.env(k), f"{where}: {c.where}"
    for name, service in COMPOSE["services"].items():
        assert "CASEMESH_DEV_SIGN_IN" not in service.get("environment", {}), name


def _nginx_bytes(size: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    unit = size[-1].lower()
    return int(size[:-1]) * units[unit] if unit in units else int(size)


def _ingress_routes(
    ingresses: list[dict[str, Any]],
) -> dict[str, list[tuple[str, str, str, str, dict[str, str]]]]:
    """host -> [(path, pathType, service, port name, the Ingress's annotations)]."""
    routes: dict[str, list[tuple[str, str, str, str, dict[str, str]]]] = {}
    for ingress in ingresses:
        notes = ingress["metadata"].get("annotations", {})
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                routes.setdefault(rule["host"], []).append(
                    (
                        path["path"],
                        path["pathType"],
                        backend["name"],
                        backend["port"]["name"],
                        notes,
                    )
                )
    return routes


def _route(
    routes: list[tuple[str, str, str, str, dict[str, str]]], request: str
) -> tuple[str, str, dict[str, str]]:
    """(service, port, annotations) ingress-nginx sends a request path to: the
    longest match; Prefix matches whole segments (the Ingress API), an
    ImplementationSpecific path is nginx's plain prefix."""

    def matches(path: str, kind: str) -> bool:
        if kind == "Exact":
            return request == path
        if kind == "Prefix":
            segments = [p for p in path.split("/") if p]
            return [p for p in request.split("/") if p][: len(segments)] == segments
        return request.startswith(path)

    found = [r for r in routes if matches(r[0], r[1])]
    assert found, f"nothing routes {request}"
    _, _, service, port, notes = max(found, key=lambda r: len(r[0]))
    return service, port, notes


def test_the_ingress_example_routes_to_the_gateway_and_lets_uploads_through() -> None:
    ingresses = load_docs(K8S / "components" / "gateway-ingress" / "ingress.yaml")
    largest = max(
        EvidenceSettings.model_fields[f"max_{kind}_bytes"].default
        for kind in ("image", "video", "pdf")
    )
    upload_deadline = GatewaySettings.model_fields["upload_timeout_seconds"].default
    routed: dict[str, dict[str, str]] = {}
    for ingress in ingresses:
        assert ingress["metadata"]["namespace"] == "casemesh"
        assert ingress["spec"]["tls"], ingress["metadata"]["name"]
        notes = ingress["metadata"].get("annotations", {})
        backends = {
            path["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert len(backends) == 1, ingress["metadata"]["name"]
        if backends != {"gateway"}:
            continue
        assert _nginx_bytes(notes["nginx.ingress.kubernetes.io/proxy-body-size"]) >= largest
        assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= upload_deadline
        assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= upload_deadline
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                routed[path["backend"]["service"]["port"]["name"]] = notes
    assert set(routed) == {"grpc", "http"}
    assert routed["grpc"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    for buffering in ("proxy-buffering", "proxy-request-buffering"):
        assert routed["http"][f"nginx.ingress.kubernetes.io/{buffering}"] == "off"


def test_the_ingress_example_serves_page_console_and_api_on_one_origin() -> None:
    """The console calls the API on its own origin (its content security policy
    allows no other): one host sends the API's paths to the gateway's HTTP port,
    with the upload settings, and everything else to the console's Service."""
    routes = _ingress_routes(load_docs(K8S / "components" / "gateway-ingress" / "ingress.yaml"))
    http_hosts = [h for h, rs in routes.items() if any(r[3] == "http" for r in rs)]
    assert len(http_hosts) == 1, http_hosts
    host = routes[http_hosts[0]]
    for request in (
        "/casemesh.v1.TicketService/CreateTicket",
        "/casemesh.v1.CaseQueueService/WatchQueue",
        "/uploads/evidence",
        "/healthz/ready",
    ):
        service, port, notes = _route(host, request)
        assert (service, port) == ("gateway", "http"), request
        assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off", request
    for request in ("/console/", "/console/main.js", "/", "/main.js", "/style.css"):
        assert _route(host, request)[:2] == ("console", "http"), request
    assert ("/console/", "Prefix", "console", "http") in [r[:4] for r in host]
    console = next(
        s for s in of_kind(BASE.objects, "Service") if s["metadata"]["name"] == "console"
    )
    assert "http" in {p["name"] for p in console["spec"]["ports"]}


def _console(k: Kustomized) -> Container:
    found = [c for c in containers(k.objects) if c.owner["metadata"]["name"] == "console"]
    assert len(found) == 1, "one console container"
    return found[0]


@pytest.mark.parametrize("where", ["dev", "prod"])
def test_the_console_is_served_by_its_own_deployment(where: str) -> None:
    k = DEV if where == "dev" else PROD
    c = _console(k)
    assert c.owner["kind"] == "Deployment"
    assert c.spec["image"] == "casemesh-web"
    # Its image is set like the services' (kustomize images:, a tag per overlay).
    overlay = yaml.safe_load((K8S / "overlays" / where / "kustomization.yaml").read_text())
    assert "casemesh-web" in {i["name"] for i in overlay["images"]}, where
    assert c.port("http") == 8080
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c.spec[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    sc = c.spec["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert c.pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # Nothing to sign anyone in with, nor any Secret: only the origins its page
    # may call (its identity provider), from the ConfigMap an operator may create.
    assert not c.spec.get("envFrom")
    assert c.spec["env"] == [
        {
            "name": "CASEMESH_CONSOLE_CONNECT_ORIGINS",
            "valueFrom": {
                "configMapKeyRef": {
                    "name": "console-config",
                    "key": "connect-origins",
                    "optional": True,
                }
            },
        }
    ]
    service = next(s for s in of_kind(k.objects, "Service") if s["metadata"]["name"] == "console")
    labels = c.pod["metadata"]["labels"]
    assert all(labels.get(key) == v for key, v in service["spec"]["selector"].items())
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["http"]["port"] == 8080 and ports["http"]["targetPort"] == "http"
    policy = next(
        p for p in of_kind(k.objects, "NetworkPolicy") if p["metadata"]["name"] == "console"
    )
    assert all(
        labels.get(key) == v for key, v in policy["spec"]["podSelector"]["matchLabels"].items()
    )
    assert 8080 in {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    if where == "prod":
        assert c.owner["spec"]["replicas"] >= 2


CONSOLE_IMAGE = REPO / "deploy" / "console"


def console_entrypoint(tmp_path: Path, origins: str) -> subprocess.CompletedProcess[str]:
    """Runs the front-ends image's entrypoint with CASEMESH_CONSOLE_CONNECT_ORIGINS
    set to `origins`, a stand-in nginx printing the configuration it is given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    nginx = bin_dir / "nginx"
    nginx.write_text('#!/bin/sh\n[ "$1" = -c ] && exec cat "$2"\n')
    nginx.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "CASEMESH_CONSOLE_CONNECT_ORIGINS": origins,
    }
    return subprocess.run(
        ["sh", str(CONSOLE_IMAGE / "entrypoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def nginx_policies(conf: str) -> dict[str, str]:
    """The Content-Security-Policy nginx sends, by page: `console` (/console/)
    and `default` (everything else), its connect-src filled from the map."""
    header = re.search(r'add_header Content-Security-Policy "([^"]+)" always;', conf)
    mapped = re.search(r"map \$uri \$casemesh_connect_src \{(.*?)\}", conf, re.S)
    assert header and mapped
    sources = dict(re.findall(r'^\s*(\S+) "([^"]*)";', mapped.group(1), re.M))
    assert set(sources) == {"~^/console/", "default"}, sources
    return {
        "console" if page == "~^/console/" else page: header.group(1).replace(
            "$casemesh_connect_src", connect
        )
        for page, connect in sources.items()
    }


def test_the_front_ends_image_serves_what_the_gateway_would(tmp_path: Path) -> None:
    """deploy/console: nginx on the container's port, the pages where the gateway
    serves them (/ and /console/), with the gateway's content security policy:
    the console's lets it call the same origins (its identity provider)."""
    folder = CONSOLE_IMAGE
    origins = "https://id.example.com, http://127.0.0.1:9000"
    started = console_entrypoint(tmp_path, origins)
    assert started.returncode == 0, started.stderr
    conf = started.stdout
    assert conf == (tmp_path / "nginx.conf").read_text()
    dockerfile = (folder / "Dockerfile").read_text()
    assert re.search(r"^\s*listen 8080;", conf, re.M)
    assert "EXPOSE 8080" in dockerfile
    gateway = GatewaySettings(
        jwt_secret="x" * 40,
        internal_signing_key=new_signing_key(),
        console_connect_origins=origins,
    )
    assert nginx_policies(conf) == {
        "console": content_security_policy(gateway.console_connect_origin_list).decode(),
        "default": CONTENT_SECURITY_POLICY.decode(),
    }
    # Without origins, the console's page calls its own origin only.
    assert console_entrypoint(tmp_path, "").returncode == 0
    assert set(nginx_policies((tmp_path / "nginx.conf").read_text()).values()) == {
        CONTENT_SECURITY_POLICY.decode()
    }
    # The image runs the script beside the template it fills in.
    copied = re.search(r"^COPY (deploy/console/\S+) (deploy/console/\S+) (\S+)/$", dockerfile, re.M)
    assert copied and {copied.group(1), copied.group(2)} == {
        "deploy/console/nginx.conf.template",
        "deploy/console/entrypoint.sh",
    }
    assert f'ENTRYPOINT ["/bin/sh", "{copied.group(3)}/entrypoint.sh"]' in dockerfile
    assert "add_header X-Content-Type-Options nosniff always;" in conf
    assert "location = /healthz {" in conf
    root = re.search(r"^\s*root (\S+);", conf, re.M)
    assert root
    copies = dict(
        (source.rsplit("/clients/web/", 1)[1], target)
        for source, target in re.findall(r"^COPY --from=build (\S+) (\S+)$", dockerfile, re.M)
    )
    assert copies == {
        "selfservice/dist": root.group(1),
        "console/dist": f"{root.group(1)}/console",
    }
    assert "location /console/ {" in conf
    # The root filesystem is read-only: nginx writes to /tmp (an emptyDir) only.
    assert re.search(r"^pid /tmp/", conf, re.M)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert re.search(rf"^\s*{temp}_temp_path /tmp/", conf, re.M), temp
    assert "/tmp" in {m["mountPath"] for m in _console(DEV).spec["volumeMounts"]}
    # What an admin keeps in a ConfigMap comes before the image's: the macros
    # (console-macros), the sign-in settings (console-config; the image's name
    # no identity provider, and the console offers the development sign-in).
    mounts = {m["name"]: m for m in _console(DEV).spec["volumeMounts"]}
    volumes = {v["name"]: v for v in _console(DEV).owner["spec"]["template"]["spec"]["volumes"]}
    for volume, configmap, file in (
        ("macros", "console-macros", "macros.json"),
        ("config", "console-config", "config.json"),
    ):
        source = volumes[volume]["configMap"]
        assert source["name"] == configmap and source["optional"] is True
        assert [i["path"] for i in source["items"]] == [file]
        served = re.search(rf"location = /console/{re.escape(file)} \{{(.*?)\}}", conf, re.S)
        assert served, file
        data_root = re.search(r"root (\S+);", served.group(1))
        tries = re.search(r"try_files (\S+) (\S+) =404;", served.group(1))
        assert data_root and tries
        assert f"{data_root.group(1)}{tries.group(1)}" == f"{mounts[volume]['mountPath']}/{file}"
        assert f"{data_root.group(1)}{tries.group(2)}" == f"{root.group(1)}/console/{file}"


@pytest.mark.parametrize(
    ("origins", "accepted"),
    [
        ("https://id.example.com", True),
        ("https://id.example.com:8443,https://login.example.org", True),
        ("http://127.0.0.1:9000", True),
        ("http://localhost:9000", True),
        ("http://[::1]:9000", True),
        ("http://id.example.com", False),  # plain http off loopback
        ("https://id.example.com/realms/platform", False),  # a path
        ("https://id.example.com;script-src *", False),  # the rest of a policy
        ("https://id.example.com'", False),
        ("https://*.example.com", False),
        ("*", False),
        ("'unsafe-inline'", False),
        ("id.example.com", False),
    ],
)
def test_the_image_and_the_gateway_accept_the_same_connect_origins(
    tmp_path: Path, origins: str, accepted: bool
) -> None:
    """What reaches the console's connect-src is an origin (https, plain http on
    loopback only), never a path, a wildcard or the rest of a policy: nginx's
    entrypoint and the gateway's settings accept and refuse alike."""
    started = console_entrypoint(tmp_path, origins)
    assert (started.returncode == 0) == accepted, started.stderr
    if accepted:
        GatewaySettings(
            jwt_secret="x" * 40,
            internal_signing_key=new_signing_key(),
            console_connect_origins=origins,
        )
    else:
        assert "is not an origin" in started.stderr
        with pytest.raises(ValidationError, match="is not an origin"):
            GatewaySettings(
                jwt_secret="x" * 40,
                internal_signing_key=new_signing_key(),
                console_connect_origins=origins,
            )


def test_the_services_believe_the_gateway_they_are_deployed_with() -> None:
    """Compose and the dev overlay give each service the public half of the key
    the gateway signs with (another key would refuse every call), and only the
    gateway holds the private half. Inbound mail signs with a key of its own,
    whose public half only tickets and evidence (the services it calls) hold."""
    gateway = COMPOSE["services"]["gateway"]["environment"]["CASEMESH_INTERNAL_SIGNING_KEY"]
    dev_gateway = DEV.secrets["gateway-signing-key"]["CASEMESH_INTERNAL_SIGNING_KEY"]
    inbound = COMPOSE["services"]["inbound"]["environment"]["CASEMESH_INTERNAL_SIGNING_KEY"]
    dev_inbound = DEV.secrets["inbound-signing-key"]["CASEMESH_INTERNAL_SIGNING_KEY"]
    assert verify_key_of(inbound) != verify_key_of(gateway)
    assert verify_key_of(dev_inbound) != verify_key_of(dev_gateway)
    for where, signing, by_mail, env_of in (
        ("docker-compose.yml", gateway, inbound, lambda s: compose_service(s)[1]["environment"]),
        ("overlays/dev", dev_gateway, dev_inbound, lambda s: k8s_container(s).env(DEV)),
    ):
        for spec in SPECS:
            env = env_of(spec)
            if spec.name in ("gateway", "inbound"):
                continue
            assert "CASEMESH_INTERNAL_SIGNING_KEY" not in env, f"{where}: {spec.name}"
            if "CASEMESH_INTERNAL_VERIFY_KEY" in spec.env:
                assert verify_keys(str(env["CASEMESH_INTERNAL_VERIFY_KEY"])) == verify_keys(
                    verify_key_of(signing)
                ), f"{where}: {spec.name}"
            if spec.name in ("tickets", "evidence"):
                assert verify_keys(str(env["CASEMESH_INBOUND_VERIFY_KEY"])) == verify_keys(
                    verify_key_of(by_mail)
                ), f"{where}: {spec.name}"
            else:
                assert "CASEMESH_INBOUND_VERIFY_KEY" not in env, f"{where}: {spec.name}"
    dev_public = DEV.configmaps["internal-identity"]["CASEMESH_INTERNAL_VERIFY_KEY"]
    prod_public = PROD.configmaps["internal-identity"]["CASEMESH_INTERNAL_VERIFY_KEY"]
    dev_public += DEV.configmaps["inbound-identity"]["CASEMESH_INBOUND_VERIFY_KEY"]
    prod_public += PROD.configmaps["inbound-identity"]["CASEMESH_INBOUND_VERIFY_KEY"]
    assert "PRIVATE KEY" not in dev_public + prod_public


def test_every_topic_is_a_kafka_topic_and_created_by_compose() -> None:
    topics = {t["spec"]["topicName"]: t for t in of_kind(BASE.objects, "KafkaTopic")}
    assert set(topics) == set(stack.TOPICS)
    created = " ".join(COMPOSE["services"]["kafka-topics"]["command"])
    # Compose gives every topic the same largest record.
    assert f"max.message.bytes={casemesh_topics.MAX_RECORD_BYTES}" in created
    for name, topic in topics.items():
        assert name in created, f"docker-compose.yml does not create {name}"
        spec = topic["spec"]
        assert spec["partitions"] == stack.TOPIC_PARTITIONS, name
        assert spec["replicas"] == 3, name
        assert spec["config"]["min.insync.replicas"] == 2, name
        # What the code creates locally and in the tests (`casemesh.topics.CONFIGS`).
        kept = casemesh_topics.CONFIGS[name]
        assert {k: str(spec["config"][k]) for k in kept} == kept, name
        # As large a record as the producers send: a stored event's can be
        # twice its 512 KiB, past Kafka's default (1 MiB).
        assert spec["config"]["max.message.bytes"] == casemesh_topics.MAX_RECORD_BYTES, name
        retention = spec["config"]["retention.ms"]
        if name == stack.CODES_TOPIC:
            assert retention == 3_600_000, name
        elif name in (stack.NOTIFICATIONS_TOPIC, casemesh_topics.HELPCENTER):
            # Delivery outcomes; verified requests, with both phone numbers in clear.
            assert 0 < retention <= 30 * 86_400_000, name
        else:
            # Whole aggregate streams: read models are rebuilt from offset 0.
            assert retention == -1, name
        configs = [f"retention.ms={retention}"]
        if retention > 0:
            # Kafka deletes only closed segments, and closes one after segment.ms
            # (7 days unless set): it bounds how long past retention.ms a record stays.
            segment = spec["config"]["segment.ms"]
            assert 0 < segment <= retention / 5, name
            configs.append(f"segment.ms={segment}")
        else:
            assert "segment.ms" not in spec["config"], name
        assert f"{name}:{','.join(configs)}" in created, f"docker-compose.yml: {name}'s configs"
    assert f"--partitions {stack.TOPIC_PARTITIONS}" in created


def test_dev_runs_kafka_with_a_single_replica() -> None:
    dev = yaml.safe_load((K8S / "overlays" / "dev" / "kustomization.yaml").read_text())
    topic_patch = next(p for p in dev["patches"] if p.get("target", {}).get("kind") == "KafkaTopic")
    ops = {op["path"]: op["value"] for op in yaml.safe_load(topic_patch["patch"])}
    assert ops == {"/spec/replicas": 1, "/spec/config/min.insync.replicas": 1}
    pools = of_kind(load_docs(K8S / "overlays" / "dev" / "kafka.yaml"), "KafkaNodePool")
    assert [p["spec"]["replicas"] for p in pools] == [1]


def test_kafka_nodes_run_on_different_kubernetes_nodes() -> None:
    (pool,) = of_kind(BASE.objects, "KafkaNodePool")
    (kafka,) = of_kind(BASE.objects, "Kafka")
    anti = pool["spec"]["template"]["pod"]["affinity"]["podAntiAffinity"]
    (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == {
        "strimzi.io/cluster": kafka["metadata"]["name"],
        "strimzi.io/pool-name": pool["metadata"]["name"],
    }


def test_postgres_replicates_synchronously_wherever_there_are_standbys() -> None:
    """A commit waits for a standby, so a failover loses no event a caller was
    told was stored; overlays/dev's single instance has none to wait for (and
    CloudNativePG refuses a number that is not below the instances)."""
    for name, cluster in clusters().items():
        spec = cluster["spec"]
        sync = spec["postgresql"]["synchronous"]
        assert sync == {"method": "any", "number": 1, "dataDurability": "required"}, name
        assert sync["number"] < spec["instances"], name
    dev = yaml.safe_load((K8S / "overlays" / "dev" / "kustomization.yaml").read_text())
    (patch,) = [p for p in dev["patches"] if p.get("target", {}).get("kind") == "Cluster"]
    ops = yaml.safe_load(patch["patch"])
    assert {"op": "replace", "path": "/spec/instances", "value": 1} in ops
    assert {"op": "remove", "path": "/spec/postgresql/synchronous"} in ops


def test_every_database_is_a_postgres_cluster_and_created_by_compose() -> None:
    by_db = {c["spec"]["bootstrap"]["initdb"]["database"]: c for c in clusters().values()}
    assert set(by_db) == set(stack.DATABASES)
    for db, cluster in by_db.items():
        assert cluster["spec"]["bootstrap"]["initdb"]["owner"], db
    init = (REPO / "deploy" / "compose" / "postgres-init.sql").read_text()
    assert set(re.findall(r"CREATE DATABASE (\w+);", init)) == set(stack.DATABASES)


def test_every_database_knows_the_case_of_letters_beyond_ascii() -> None:
    """A new cluster is made with Unicode's case mapping (CloudNativePG's
    default locale, C, knows ASCII letters only: `ÉCRAN ILIKE 'écran'` is
    false there) and C's bytewise order, which no C library update moves."""
    for name, cluster in clusters().items():
        initdb = cluster["spec"]["bootstrap"]["initdb"]
        assert initdb.get("localeCType") == "C.UTF-8", name
        assert initdb.get("localeCollate") == "C", name


def test_the_key_database_is_made_with_the_librarys_own_statements() -> None:
    """Operators make the key database's tables (the services may not): the
    cluster's bootstrap and compose's init SQL run `create_schema`'s
    statements, and the cluster's grants the services' role rows only."""
    statements = [f"{statement};" for statement in KEYS_SCHEMA]
    initdb = clusters()["keys-db"]["spec"]["bootstrap"]["initdb"]
    assert initdb["postInitApplicationSQL"] == [
        *statements,
        f"GRANT SELECT, INSERT, UPDATE ON personal_keys, personal_erasures TO {initdb['owner']};",
        f"GRANT USAGE ON SEQUENCE personal_erasures_id_seq TO {initdb['owner']};",
    ]
    init = (REPO / "deploy" / "compose" / "postgres-init.sql").read_text()
    after = init.split("\\connect casemesh_keys\n", 1)[1]
    assert after.splitlines() == statements


ALL_CONTAINERS = list(containers(DEV.objects))  # the base, and what dev adds


@pytest.mark.parametrize("c", ALL_CONTAINERS, ids=lambda c: c.where)
def test_every_container_is_locked_down(c: Container) -> None:
    sc = c.spec["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = c.pod["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c.spec["resources"][kind]), f"{c.where} {kind}"
    # The root filesystem is read-only: /tmp is an emptyDir.
    tmp = next(m for m in c.spec["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    account = next(
        s for s in of_kind(DEV.objects, "ServiceAccount")
        if s["metadata"]["name"] == pod["serviceAccountName"]
    )  # fmt: skip
    assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_process_is_probed_observable_and_stops_gracefully(spec: stack.ServiceSpec) -> None:
    c = k8s_container(spec)
    env = c.env(DEV)
    grpc_port = c.port("grpc")
    if c.port("http") is not None:
        # The gateway: ready on its HTTP port (503 from the moment it drains, as
        # gRPC's "" turns NOT_SERVING), so that port is probed too.
        ready = c.spec["readinessProbe"]["httpGet"]
        assert ready == {"path": "/healthz/ready", "port": "http"}, c.where
    if grpc_port is not None:
        if c.port("http") is None:
            ready = c.spec["readinessProbe"]["grpc"]
            assert ready["port"] == grpc_port and ready.get("service", "") == ""
        live = c.spec["livenessProbe"]["grpc"]
        assert live == {"port": grpc_port, "service": "liveness"}
    else:
        live = c.spec["livenessProbe"]["httpGet"]
        assert live["path"] == "/metrics" and live["port"] in METRICS_PORTS
    # Metrics: a named port and the address the process serves them on.
    names = [p["name"] for p in c.spec["ports"] if p["name"] in METRICS_PORTS]
    assert len(names) == 1, c.where
    assert env["CASEMESH_METRICS_ADDR"] == f"0.0.0.0:{METRICS_PORTS[names[0]]}"
    assert c.port(names[0]) == METRICS_PORTS[names[0]]
    # JSON logs, traces to the collector, the shutdown sequence.
    assert env["CASEMESH_LOG_FORMAT"] == "json"
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    delay = float(env["CASEMESH_SHUTDOWN_DELAY_SECONDS"] or 0)
    grace = float(env["CASEMESH_SHUTDOWN_GRACE_SECONDS"] or 0)
    # Uploads pass through the gateway to evidence: those two wait longer.
    assert (delay, grace) == ((5, 300) if spec.name in ("gateway", "evidence") else (5, 20))
    assert c.pod["spec"]["terminationGracePeriodSeconds"] >= delay + grace + 20, c.where
    if c.owner["metadata"]["name"] == "notifier":
        # It finishes the send in hand, which may take this long with the defaults.
        longest = NotifierSettings.model_construct().longest_send
        assert c.pod["spec"]["terminationGracePeriodSeconds"] >= delay + grace + longest + 20


def test_a_local_notifier_may_finish_its_send_in_hand_before_it_is_killed() -> None:
    """Ctrl-C on `./dev up` while a slow relay takes a message: the notifier is
    not killed before the send is finished and recorded, or the job would go
    out again, as a possible repeat, once its claim lapsed."""
    notifier = next(s for s in SPECS if s.name == "notifier")
    # What the supervisor waits after SIGTERM before it sends SIGKILL.
    waits = grace_period(notifier.env, least=notifier.stop_grace)
    drain = grace_period(notifier.env, margin=0)
    longest = NotifierSettings.model_construct().longest_send
    assert waits >= drain + longest + RECORD_MARGIN_S + 10
    # As long as compose and Kubernetes give it.
    _, service = compose_service(notifier)
    assert service["stop_grace_period"] == f"{waits:g}s"
    assert k8s_container(notifier).pod["spec"]["terminationGracePeriodSeconds"] == waits


def test_sidecar_relays_are_in_the_writer_pods() -> None:
    for spec in SPECS:
        if spec.argv[-1] != "relay":
            continue
        relay = k8s_container(spec)
        api = next(s for s in SPECS if s.argv[2:] == [spec.argv[2], "serve"])
        assert relay.owner is k8s_container(api).owner, f"{spec.name} runs beside {api.name}"


def test_prod_scales_within_the_partitions() -> None:
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in of_kind(PROD.objects, "HorizontalPodAutoscaler")
    }
    for h in hpas.values():
        assert h["apiVersion"] == "autoscaling/v2"
        assert h["spec"]["minReplicas"] >= 2
    stateless = {"gateway", "tickets", "appeals", "reports", "evidence", "helpcenter"}
    assert stateless <= set(hpas)
    # Kafka consumers: more replicas than partitions would idle.
    for name in ("notifier", "casequeue"):
        assert hpas[name]["spec"]["maxReplicas"] <= stack.TOPIC_PARTITIONS, name
    replicas = {
        d["metadata"]["name"]: d["spec"]
        for d in load_docs(K8S / "overlays" / "prod" / "replicas.yaml")
    }
    assert 2 <= replicas["reports-appeals"]["replicas"] <= stack.TOPIC_PARTITIONS
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in of_kind(PROD.objects, "PodDisruptionBudget")
    }
    deployments = {d["metadata"]["name"] for d in of_kind(BASE.objects, "Deployment")}
    assert budgets == deployments


def _metric_names(expr: str) -> set[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)
        for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, str | int | float):
                visit(child)
        for arg in getattr(node, "args", None) or []:
            visit(arg)

    visit(promql_parser.parse(expr))
    return found


def test_alerts_cover_the_system_with_metrics_it_exposes() -> None:
    rule = yaml.safe_load((K8S / "base" / "monitoring" / "prometheusrule.yaml").read_text())
    used: set[str] = set()
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            # That each name is exposed by a running process: tests/e2e/test_metrics.py.
            used |= _metric_names(r["expr"])
    for needed in (
        "casemesh_relay_lag_events",  # relay lag
        "casemesh_relay_active",  # no active relay
        "casemesh_consumer_lag_records",  # consumer lag
        "casemesh_notifications_parked",  # parked notifications
        "casemesh_queue_sla_breaches_total",  # SLA breaches
        "grpc_server_handled_total",  # gRPC error rate
        "grpc_server_handling_seconds_bucket",  # gRPC latency
    ):
        assert needed in used, f"no alert on {needed}"


def test_an_alert_fires_when_a_consumer_is_gone() -> None:
    """Each consumer group that reports its lag has an absent() rule."""
    rule = yaml.safe_load((K8S / "base" / "monitoring" / "prometheusrule.yaml").read_text())
    alerts = {r.get("alert"): r for g in rule["spec"]["groups"] for r in g["rules"]}
    expr = alerts["CasemeshConsumerMissing"]["expr"]
    for group in (
        NotifierSettings.model_fields["consumer_group"].default,
        ReportsConsumerSettings.model_fields["consumer_group"].default,
        EVIDENCE_GROUP,
    ):
        assert f'absent(casemesh_consumer_lag_records{{group="{group}"}})' in expr, group
    # The case queue's group carries its read model's generation.
    queue = QueueSettings.model_fields["consumer_group"].default
    assert f'absent(casemesh_consumer_lag_records{{group=~"{queue}-[0-9]+"}})' in expr
    assert alerts["CasemeshConsumerMissing"]["labels"]["severity"] == "critical"


def test_an_erasure_stuck_after_the_admin_was_told_it_was_made_fires_an_alert() -> None:
    """ErasePerson answers once the keys are gone; the services forget the
    person only once the erasure is published and heard. Stuck at either
    step (one erasure is enough), an alert fires; and the groups hearing it
    report their lag."""
    rule = yaml.safe_load((K8S / "base" / "monitoring" / "prometheusrule.yaml").read_text())
    alerts = {r.get("alert"): r for g in rule["spec"]["groups"] for r in g["rules"]}
    unpublished = alerts["CasemeshErasuresUnpublished"]["expr"]
    assert (
        f'casemesh_outbox_pending_events{{topic="{casemesh_topics.PRIVACY}"}}) > 0' in unpublished
    )
    heard = alerts["CasemeshErasuresNotHeard"]["expr"]
    assert re.search(heard.split('group=~"')[1].split('"')[0], erasure_group("tickets"))
    assert heard.rstrip().endswith("> 0")
    hearing = SimpleNamespace(service_name="tickets", kafka_bootstrap="127.0.0.1:9")
    measured = [s for s in ErasureFollower(hearing, lambda person: 0).subscriptions() if s.lag]
    assert [s.group_id for s in measured] == [erasure_group("tickets")]


def test_production_backs_up_every_database_each_night() -> None:
    """WAL archiving alone cannot restore a cluster: each needs base backups,
    the key database most of all (lose it and every sealed field is lost)."""
    clusters = {
        d["metadata"]["name"]
        for d in load_docs(K8S / "base" / "postgres.yaml")
        if d.get("kind") == "Cluster"
    }
    backed_up = {
        d["spec"]["cluster"]["name"]
        for d in load_docs(K8S / "overlays" / "prod" / "backups.yaml")
        if d.get("kind") == "ScheduledBackup"
    }
    assert "keys-db" in clusters
    assert clusters == backed_up


def _quantity(value: str) -> int:
    units = {"Gi": 1 << 30, "Mi": 1 << 20}
    return int(value[:-2]) * units[value[-2:]]


def test_the_evidence_spool_leaves_room_in_its_volume_for_a_killed_processs_leftovers() -> None:
    """Uploads under way spool at most CASEMESH_EVIDENCE_SPOOL_BYTES; a
    process killed mid-upload leaves its files for an hour, which the next
    does not count. Twice the budget must fit, or a burst fills the volume
    (ENOSPC mid-upload, or the kubelet evicting the pod) instead of being
    told RESOURCE_EXHAUSTED."""

    def claim(docs: list[dict[str, Any]]) -> int:
        (pvc,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
        return _quantity(pvc["spec"]["resources"]["requests"]["storage"])

    prod_patch = load_docs(K8S / "overlays" / "prod" / "evidence.yaml")[0]
    (volume,) = [v for v in prod_patch["spec"]["template"]["spec"]["volumes"] if "emptyDir" in v]
    volumes = {
        "base": (
            BASE,
            claim([d for d in BASE.objects if d["metadata"]["name"] == "evidence-data"]),
        ),
        "dev": (DEV, claim(load_docs(K8S / "overlays" / "dev" / "evidence.yaml"))),
        "prod": (PROD, _quantity(volume["emptyDir"]["sizeLimit"])),
    }
    for overlay, (k, size) in volumes.items():
        spool = int(k.configmaps["evidence-config"]["CASEMESH_EVIDENCE_SPOOL_BYTES"])
        assert 0 < 2 * spool <= size, overlay


def test_each_evidence_size_limit_fits_the_spool_budget_or_the_service_does_not_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upload holds its kind's whole size limit of the spool budget: a
    limit past the budget would refuse every upload of that kind as busy,
    for ever. Such settings stop the service at start, naming both; what the
    manifests give the evidence service starts."""
    for k in (DEV, PROD):
        (evidence,) = [c for c in containers(k.objects) if "casemesh_evidence" in c.argv]
        for name in [n for n in os.environ if n.startswith("CASEMESH_")]:
            monkeypatch.delenv(name)
        for name, value in evidence.env(k).items():
            if name.startswith("CASEMESH_") and value is not None:
                monkeypatch.setenv(name, value)
        # What a Secret or the operator gives (placeholders in the overlays).
        monkeypatch.setenv("CASEMESH_INTERNAL_VERIFY_KEY", verify_key_of(new_signing_key()))
        monkeypatch.setenv("CASEMESH_INBOUND_VERIFY_KEY", verify_key_of(new_signing_key()))
        monkeypatch.setenv("CASEMESH_DATABASE_URL", "postgresql://evidence@db/evidence")
        monkeypatch.setenv("CASEMESH_S3_BUCKET", "evidence")
        cfg = settings_load(EvidenceSettings)
        assert max(cfg.limits().values()) <= cfg.evidence_spool_bytes
        assert max(cfg.limits().values()) <= cfg.evidence_spool_bytes_per_person

    for setting in ("CASEMESH_EVIDENCE_SPOOL_BYTES", "CASEMESH_EVIDENCE_SPOOL_BYTES_PER_PERSON"):
        with monkeypatch.context() as changed:
            changed.setenv(setting, str(100 << 20))
            with pytest.raises(SystemExit) as stopped:
                settings_load(EvidenceSettings)
        assert stopped.value.code == 2
        said = capsys.readouterr().err
        assert "CASEMESH_MAX_VIDEO_BYTES (524288000) must be at most" in said
        assert f"{setting} (104857600)" in said
        assert "CASEMESH_MAX_IMAGE_BYTES" not in said

    monkeypatch.setenv("CASEMESH_EVIDENCE_SPOOL_BYTES", str(100 << 20))
    monkeypatch.setenv("CASEMESH_MAX_VIDEO_BYTES", str(100 << 20))
    assert settings_load(EvidenceSettings).limits()["video"] == 100 << 20  # equal fits
    monkeypatch.setenv("CASEMESH_MAX_PDF_BYTES", str((100 << 20) + 1))
    with pytest.raises(ValidationError, match="CASEMESH_MAX_PDF_BYTES"):
        EvidenceSettings()


def _notifier_environment(k: Kustomized, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the overlay's notifier starts with, what its Secrets
    give made up."""
    (notifier,) = [c for c in containers(k.objects) if c.argv[1:] == ["-m", "casemesh_notifier"]]
    for name in [n for n in os.environ if n.startswith("CASEMESH_")]:
        monkeypatch.delenv(name)
    for name, value in notifier.env(k).items():
        if name.startswith("CASEMESH_") and value is not None:
            monkeypatch.setenv(name, value)
    secrets = {
        **personal_env(),
        "CASEMESH_INTERNAL_VERIFY_KEY": verify_key_of(new_signing_key()),
        "CASEMESH_DATABASE_URL": "postgresql://notifier@db/notifier",
        "CASEMESH_SMTP_HOST": "smtp.help.example.com",
        "CASEMESH_SMS_URL": "https://sms.example.com/send",
        "CASEMESH_REPLY_DOMAIN": "reply.example.com",
        "CASEMESH_REPLY_TOKEN_SECRET": "s" * 32,
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)


def test_production_sends_no_email_until_its_sender_is_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real relay refuses a sender on a domain it may not send for (the
    base's support@casemesh.local, which only the dev sinks take): every
    e-mail would be retried or parked and nobody told. The production overlay
    leaves the sender to set, and its notifier refuses to start until it is
    set, naming it; the dev overlay's starts."""
    as_deployed = PROD.configmaps["notifier-config"]["CASEMESH_MAIL_FROM"]
    assert as_deployed == "CHANGE-ME"
    _notifier_environment(DEV, monkeypatch)
    assert settings_load(NotifierServiceSettings).mail_from.endswith("@casemesh.local>")

    _notifier_environment(PROD, monkeypatch)
    # As deployed, and half replaced.
    for placeholder in (as_deployed, "Casemesh Support <support@CHANGE-ME>"):
        monkeypatch.setenv("CASEMESH_MAIL_FROM", placeholder)
        with pytest.raises(SystemExit) as stopped:
            settings_load(NotifierServiceSettings)
        assert stopped.value.code == 2
        refused = capsys.readouterr().err.splitlines()[1:]
        assert refused == [
            f"  CASEMESH_MAIL_FROM: Value error, {placeholder!r} is a placeholder: set the"
            " sender of every e-mail, on a domain whose SPF and DMARC let the relay send for it"
        ]
    monkeypatch.setenv("CASEMESH_MAIL_FROM", "Casemesh Support <support@help.example.com>")
    assert settings_load(NotifierServiceSettings).mail_from.endswith("@help.example.com>")


def test_the_deploy_check_refuses_a_variable_no_setting_reads_and_a_required_one_missing() -> None:
    """pydantic-settings ignores a CASEMESH_ variable no field reads: a
    misspelt one in a manifest changes nothing, silently. `./dev
    deploy-check` names it, and a required one a container lacks."""

    def pod(args: list[str], env: list[dict[str, Any]], env_from: list[Any]) -> dict[str, Any]:
        container = {"name": "c", "args": args, "env": env, "envFrom": env_from}
        return {
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [container]}}},
        }

    config = {
        "kind": "ConfigMap",
        "metadata": {"name": "common"},
        "data": {"CASEMESH_LOG_LEVEL": "info"},
    }
    misspelt = pod(
        ["casemesh_casequeue", "rebuild"],
        [
            {"name": "CASEMESH_DATABASE_URL", "value": "postgresql://q"},
            {"name": "CASEMESH_DATABSE_URL", "value": "x"},
        ],
        [{"configMapRef": {"name": "common"}}],
    )
    lacking = pod(["casemesh_casequeue", "rebuild"], [], [])
    unknown = pod(["casemesh_casequeue", "drop"], [], [])
    # The same command spelt otherwise (a program alone runs its first).
    secret = [{"secretRef": {"name": "s"}}]  # may hold what they require
    alike = pod(
        ["casemesh_gateway", "serve"], [{"name": "CASEMESH_JWT_SECRT", "value": "x"}], secret
    )
    bare = pod(["casemesh_tickets"], [{"name": "CASEMESH_DATABASE_URL", "value": "x"}], secret)
    report = Report()
    check_settings(Render("r", (), [config, misspelt, lacking, unknown, alike, bare]), report)
    assert report.problems == [
        "r: Deployment/d container c: CASEMESH_DATABSE_URL is read by no setting of"
        " `python -m casemesh_casequeue rebuild`",
        "r: Deployment/d container c: CASEMESH_DATABASE_URL is required by"
        " `python -m casemesh_casequeue rebuild` and not set",
        "r: Deployment/d container c: no settings class known for"
        " `python -m casemesh_casequeue drop`",
        "r: Deployment/d container c: CASEMESH_JWT_SECRT is read by no setting of"
        " `python -m casemesh_gateway`",
    ]
    assert "casemesh_casequeue rebuild" in SETTINGS
