"""Offline checks of the Kubernetes manifests (no cluster, no Docker engine needed).

1. render: `kubectl kustomize` builds the base (k8s/) and every overlay (which between them
   use every component of k8s/components/).
2. schema: every rendered object, and metric-server-components.yaml, against the Kubernetes
   OpenAPI schema (kubernetes-validate's strict schemas: unknown fields and wrong types fail), for
   the oldest and the newest Kubernetes version we support. It reports the first fault of each
   object (kubernetes-validate stops there). Gateway API objects (CRDs, unknown to it) against
   gateway_api.py's strict schema of the part we use.
3. consistency: what the schema cannot see (see `consistency_errors`, `secret_errors`,
   `gateway_errors`), and that docs/deploy.md creates every Secret the manifests need
   (`secret_doc_errors`).
4. checkov: security and good-practice policies over k8s/, metric-server-components.yaml and
   the Dockerfile; every skip must carry its reason, and the Dockerfile's external FROM images
   must carry a pinned tag (`dockerfile_from_errors`).

Usage: tools/k8s-check/run.sh (installs the pinned tools, then runs this and its tests).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

import gateway_api

REPO = Path(__file__).resolve().parents[2]
# What `kubectl apply -k` is pointed at: the base and each overlay.
KUSTOMIZATIONS = (
    "k8s",
    "k8s/overlays/custom-metrics",
    "k8s/overlays/registry",
    "k8s/overlays/production",
)
# Applied with `kubectl apply -f`, as they are.
PLAIN_MANIFESTS = ("metric-server-components.yaml",)
DOCKERFILES = ("Dockerfile",)
# Where the commands that create the Secrets are written (secret_doc_errors).
DEPLOY_DOC = "docs/deploy.md"
# The oldest Kubernetes the manifests are written for (PodDisruptionBudget
# unhealthyPodEvictionPolicy, autoscaling/v2 behavior), and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29", "1.37")

# The stack's own namespace (k8s/base sets it on everything there). Its Deployments are the ones
# that must autoscale; the cluster add-ons (metrics-server, prometheus-adapter) must not: they
# serve the metrics autoscaling reads.
STACK_NAMESPACE = "crowd"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
CHECKOV_SKIP = re.compile(r"^checkov\.io/skip\d+$")
DOCKERFILE_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(.*)")

# Secrets the manifests read but never contain (created by hand: DEPLOY_DOC), with their keys.
# The optional ones must be referenced with `optional: true`, the others without.
EXTERNAL_SECRETS = {
    "crowd-ingest": {"token"},
    "crowd-api-keys": {"api-keys"},
    "crowd-redis": {"password"},
    "crowd-viewer": {"token"},
    "crowd-admin": {"token"},
    "crowd-alerts": {"webhook-secret"},
    # The Gateway's certificate (k8s/components/gateway), a kubernetes.io/tls Secret.
    "crowd-tls": {"tls.crt", "tls.key"},
}
OPTIONAL_SECRETS = {"crowd-admin", "crowd-alerts"}
# Container port names of the stack: the public listeners (the only ones a Gateway may route
# to), and the ops listener (the only one probes and Prometheus use).
PUBLIC_PORT_NAMES = {"http"}
OPS_PORT_NAME = "metrics"
# Paths that are never public, whatever port serves them.
PRIVATE_PATHS = ("/metrics", "/readyz", "/internal/", "/ws/ingest")


class RenderError(Exception):
    pass


def render(kustomization: Path) -> list[dict]:
    """The objects `kubectl apply -k kustomization` would send."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(kustomization)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {kustomization}: {result.stderr.strip()}")
    return parse(result.stdout)


def parse(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def load(path: Path) -> list[dict]:
    return parse(path.read_text())


def name_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    where = f"{namespace}/" if namespace else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


# --- 2. schema ----------------------------------------------------------------------------------


def schema_errors(objects: list[dict], versions=KUBERNETES_VERSIONS) -> list[str]:
    errors = []
    for obj in objects:
        if gateway_api.is_gateway_api(obj):
            errors += [f"{name_of(obj)}: Gateway API schema: {e}" for e in gateway_api.errors(obj)]
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.absolute_path) or "(top level)"
                errors.append(f"{name_of(obj)}: Kubernetes {version} schema: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{name_of(obj)}: {e.message}")
    return errors


# --- 3. consistency -----------------------------------------------------------------------------


def pod_templates(objects: list[dict]):
    """(workload, namespace, pod template) of every object that runs pods."""
    for obj in objects:
        if obj.get("kind") in WORKLOAD_KINDS:
            template = obj.get("spec", {}).get("template", {})
            yield obj, obj["metadata"].get("namespace"), template


def containers_of(template: dict) -> list[dict]:
    spec = template.get("spec", {})
    return spec.get("initContainers", []) + spec.get("containers", [])


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_exists(port, container_ports: list[dict]) -> bool:
    """A probe's or Service's target port: a container port's name, or its number."""
    if isinstance(port, str) and not port.isdigit():
        return any(p.get("name") == port for p in container_ports)
    return any(p.get("containerPort") == int(port) for p in container_ports)


def probe_port(probe: dict):
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            return probe[handler].get("port")
    return None  # exec probes have no port


def image_tag_error(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag (means latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image} uses the tag latest"
    return None


def consistency_errors(objects: list[dict]) -> list[str]:
    """What the schema cannot see:
    - every Deployment of the stack has exactly one HorizontalPodAutoscaler whose scaleTargetRef
      names it, and every autoscaler's target exists;
    - every Service and PodDisruptionBudget selector matches a pod template's labels, and every
      Service targetPort exists on a container of those pods;
    - every probe's port exists on its container;
    - every container requests CPU (the autoscaler's utilisation is relative to it);
    - every image has a pinned tag (no latest, no missing tag);
    - every ConfigMap a pod reads exists, and every $(VAR) of a command or its args is a
      variable of that container (Kubernetes would pass "$(VAR)" on literally);
    - a stack container with an ops port (named `metrics`) is probed over HTTP only there, and
      its pod's prometheus.io/port annotation names that port;
    - every NetworkPolicy port exists on the pods it selects, and every port a Service targets
      on pods that NetworkPolicies select is admitted by one of them;
    - every stack Deployment that may run several pods spreads them over nodes
      (topologySpreadConstraints on kubernetes.io/hostname selecting its pods);
    - every checkov skip annotation carries its reason.
    """
    errors = []
    templates = list(pod_templates(objects))

    deployments = {
        (o["metadata"].get("namespace"), o["metadata"]["name"])
        for o in objects
        if o.get("kind") == "Deployment"
    }
    stack_deployments = {d for d in deployments if d[0] == STACK_NAMESPACE}
    hpa_targets: dict[tuple, list[str]] = {}
    for hpa in (o for o in objects if o.get("kind") == "HorizontalPodAutoscaler"):
        ref = hpa.get("spec", {}).get("scaleTargetRef", {})
        target = (hpa["metadata"].get("namespace"), ref.get("name"))
        if ref.get("kind") == "Deployment" and target not in deployments:
            errors.append(
                f"{name_of(hpa)}: scaleTargetRef names Deployment {ref.get('name')}, "
                "which does not exist"
            )
        hpa_targets.setdefault((ref.get("kind"), *target), []).append(hpa["metadata"]["name"])
    for namespace, name in sorted(stack_deployments):
        hpas = hpa_targets.get(("Deployment", namespace, name), [])
        if len(hpas) != 1:
            errors.append(
                f"Deployment {namespace}/{name}: {len(hpas)} HorizontalPodAutoscalers target it "
                f"({', '.join(hpas) or 'none'}), expected exactly one"
            )

    for obj in objects:
        kind = obj.get("kind")
        if kind not in ("Service", "PodDisruptionBudget"):
            continue
        namespace = obj["metadata"].get("namespace")
        spec = obj.get("spec", {})
        selector = (
            spec.get("selector", {})
            if kind == "Service"
            else spec.get("selector", {}).get("matchLabels", {})
        )
        if kind == "Service" and not selector:
            continue  # a Service without selector has hand-made endpoints
        matched = [
            t
            for _, ns, t in templates
            if ns == namespace and selects(selector, t.get("metadata", {}).get("labels", {}))
        ]
        if not matched:
            errors.append(f"{name_of(obj)}: selector {selector} matches no pod template's labels")
            continue
        if kind == "Service":
            container_ports = [
                p for t in matched for c in containers_of(t) for p in c.get("ports", [])
            ]
            for port in spec.get("ports", []):
                target = port.get("targetPort", port.get("port"))
                if not port_exists(target, container_ports):
                    errors.append(
                        f"{name_of(obj)}: targetPort {target} is no port of the selected containers"
                    )

    for workload, _, template in templates:
        for container in containers_of(template):
            where = f"{name_of(workload)} container {container.get('name')}"
            ports = container.get("ports", [])
            for probe_kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(probe_kind)
                if probe is None:
                    continue
                port = probe_port(probe)
                if port is not None and not port_exists(port, ports):
                    errors.append(f"{where}: {probe_kind} port {port} is no port of the container")
            if "cpu" not in container.get("resources", {}).get("requests", {}):
                errors.append(f"{where}: no CPU request (the autoscaler's utilisation needs one)")
            tag_error = image_tag_error(container.get("image", ""))
            if tag_error:
                errors.append(f"{where}: {tag_error}")

    errors += reference_errors(objects, templates)
    errors += ops_port_errors(templates)
    errors += network_policy_errors(objects, templates)
    errors += spread_errors(objects, templates)

    for obj in objects:
        for key, value in (obj.get("metadata", {}).get("annotations") or {}).items():
            if CHECKOV_SKIP.match(key):
                _, _, reason = value.partition("=")
                if not reason.strip():
                    errors.append(
                        f"{name_of(obj)}: checkov skip {value!r} gives no reason (write ID=reason)"
                    )
    return errors


def env_names(container: dict, config_maps: dict[tuple, dict], namespace) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            names |= set(config_maps.get((namespace, ref.get("name")), {}))
    return names


VAR_REFERENCE = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def reference_errors(objects: list[dict], templates) -> list[str]:
    errors = []
    config_maps = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): o.get("data") or {}
        for o in objects
        if o.get("kind") == "ConfigMap"
    }
    for workload, namespace, template in templates:
        spec = template.get("spec", {})
        wanted = []  # (what, config map name, optional)
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                cm = volume["configMap"]
                wanted.append(
                    (f"volume {volume['name']}", cm.get("name"), cm.get("optional", False))
                )
        for container in containers_of(template):
            where = f"{name_of(workload)} container {container.get('name')}"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    ref = source["configMapRef"]
                    wanted.append(
                        (
                            f"container {container.get('name')} envFrom",
                            ref.get("name"),
                            ref.get("optional", False),
                        )
                    )
            for var in container.get("env", []):
                ref = (var.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    wanted.append(
                        (f"env {var['name']}", ref.get("name"), ref.get("optional", False))
                    )
            defined = env_names(container, config_maps, namespace)
            for part in ("command", "args"):
                for arg in container.get(part, []):
                    for var in VAR_REFERENCE.findall(str(arg)):
                        if var not in defined:
                            errors.append(
                                f"{where}: {part} uses $({var}), which is no variable of the container"
                            )
        for what, cm, optional in wanted:
            if (namespace, cm) not in config_maps and not optional:
                errors.append(
                    f"{name_of(workload)}: {what} reads ConfigMap {cm}, which does not exist"
                )
    return errors


def ops_port_errors(templates) -> list[str]:
    errors = []
    for workload, namespace, template in templates:
        if namespace != STACK_NAMESPACE:
            continue
        annotations = template.get("metadata", {}).get("annotations") or {}
        for container in containers_of(template):
            where = f"{name_of(workload)} container {container.get('name')}"
            ops = [p for p in container.get("ports", []) if p.get("name") == OPS_PORT_NAME]
            if not ops:
                continue
            for probe_kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                http_get = (container.get(probe_kind) or {}).get("httpGet")
                if http_get and http_get.get("port") not in (
                    OPS_PORT_NAME,
                    ops[0]["containerPort"],
                ):
                    errors.append(
                        f"{where}: {probe_kind} uses port {http_get.get('port')}, not the ops port "
                        f"{OPS_PORT_NAME}"
                    )
            if annotations.get("prometheus.io/port") != str(ops[0]["containerPort"]):
                errors.append(
                    f"{where}: prometheus.io/port is {annotations.get('prometheus.io/port')}, not the "
                    f"ops port {ops[0]['containerPort']}"
                )
    return errors


def container_port_numbers(template: dict, port) -> set[int]:
    """The container port numbers a port (number or name) stands for on a pod template."""
    numbers = set()
    for container in containers_of(template):
        for p in container.get("ports", []):
            if p.get("name") == port or str(p.get("containerPort")) == str(port):
                numbers.add(p["containerPort"])
    return numbers


def network_policy_errors(objects: list[dict], templates) -> list[str]:
    errors = []
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    selected: dict[int, list[dict]] = {}  # id(template) -> policies selecting it
    for policy in policies:
        namespace = policy["metadata"].get("namespace")
        selector = policy.get("spec", {}).get("podSelector", {}).get("matchLabels", {})
        matched = [
            t
            for _, ns, t in templates
            if ns == namespace
            and all(
                t.get("metadata", {}).get("labels", {}).get(k) == v for k, v in selector.items()
            )
        ]
        if not matched:
            errors.append(f"{name_of(policy)}: podSelector {selector} selects no pods")
        for t in matched:
            selected.setdefault(id(t), []).append(policy)
        for rule in policy.get("spec", {}).get("ingress", []):
            for port in rule.get("ports", []):
                if "port" in port and not any(
                    container_port_numbers(t, port["port"]) for t in matched
                ):
                    errors.append(
                        f"{name_of(policy)}: port {port['port']} is no container port of the pods it selects"
                    )

    def admitted(template: dict, number: int) -> bool:
        for policy in selected.get(id(template), []):
            for rule in policy.get("spec", {}).get("ingress", []):
                ports = rule.get("ports")
                if not ports or any(
                    number in container_port_numbers(template, p["port"])
                    for p in ports
                    if "port" in p
                ):
                    return True
        return False

    for svc in (o for o in objects if o.get("kind") == "Service"):
        namespace = svc["metadata"].get("namespace")
        selector = svc.get("spec", {}).get("selector") or {}
        for _, ns, t in templates:
            if (
                ns != namespace
                or id(t) not in selected
                or not selects(selector, t.get("metadata", {}).get("labels", {}))
            ):
                continue
            for port in svc["spec"].get("ports", []):
                for number in container_port_numbers(t, port.get("targetPort", port.get("port"))):
                    if not admitted(t, number):
                        errors.append(
                            f"{name_of(svc)}: port {number} of its pods is admitted by no NetworkPolicy"
                        )
    return errors


def spread_errors(objects: list[dict], templates) -> list[str]:
    errors = []
    max_replicas = {
        (o["metadata"].get("namespace"), o["spec"]["scaleTargetRef"]["name"]): o["spec"].get(
            "maxReplicas", 1
        )
        for o in objects
        if o.get("kind") == "HorizontalPodAutoscaler"
    }
    for workload, namespace, template in templates:
        if workload.get("kind") != "Deployment" or namespace != STACK_NAMESPACE:
            continue
        replicas = max(
            workload.get("spec", {}).get("replicas", 1),
            max_replicas.get((namespace, workload["metadata"]["name"]), 1),
        )
        if replicas <= 1:
            continue
        labels = template.get("metadata", {}).get("labels", {})
        if not any(
            c.get("topologyKey") == "kubernetes.io/hostname"
            and selects(c.get("labelSelector", {}).get("matchLabels", {}), labels)
            for c in template.get("spec", {}).get("topologySpreadConstraints", [])
        ):
            errors.append(
                f"{name_of(workload)}: up to {replicas} pods and no topologySpreadConstraints over "
                "kubernetes.io/hostname selecting them: they may all land on one node"
            )
    return errors


def secret_references(objects: list[dict]):
    """(where, namespace, Secret name, keys read, optional) of every Secret a pod or a Gateway
    reads."""
    for workload, namespace, template in pod_templates(objects):
        spec = template.get("spec", {})
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                sv = volume["secret"]
                keys = [i["key"] for i in sv.get("items", [])]
                yield (
                    f"{name_of(workload)} volume {volume['name']}",
                    namespace,
                    sv.get("secretName"),
                    keys,
                    sv.get("optional", False),
                )
        for container in containers_of(template):
            where = f"{name_of(workload)} container {container.get('name')}"
            for var in container.get("env", []):
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    yield (
                        f"{where} env {var['name']}",
                        namespace,
                        ref.get("name"),
                        [ref.get("key")],
                        ref.get("optional", False),
                    )
            for source in container.get("envFrom", []):
                ref = source.get("secretRef")
                if ref:
                    yield f"{where} envFrom", namespace, ref.get("name"), [], ref.get(
                        "optional", False
                    )
    for gateway in (o for o in objects if o.get("kind") == "Gateway"):
        namespace = gateway["metadata"].get("namespace")
        for listener in gateway.get("spec", {}).get("listeners", []):
            for ref in (listener.get("tls") or {}).get("certificateRefs", []):
                if ref.get("kind", "Secret") == "Secret" and ref.get("group", "") == "":
                    yield (
                        f"{name_of(gateway)} listener {listener.get('name')}",
                        ref.get("namespace", namespace),
                        ref.get("name"),
                        ["tls.crt", "tls.key"],
                        False,
                    )


def secret_errors(objects: list[dict]) -> list[str]:
    """Every Secret a pod or Gateway reads is either among the rendered objects or one of
    EXTERNAL_SECRETS, with the key it reads; optional ones (and only those) say optional."""
    errors = []
    rendered = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): set(o.get("data") or {})
        | set(o.get("stringData") or {})
        for o in objects
        if o.get("kind") == "Secret"
    }
    for where, namespace, name, keys, optional in secret_references(objects):
        if (namespace, name) in rendered:
            known = rendered[(namespace, name)]
        elif name in EXTERNAL_SECRETS:
            known = EXTERNAL_SECRETS[name]
            if optional != (name in OPTIONAL_SECRETS):
                should = (
                    "optional: true"
                    if name in OPTIONAL_SECRETS
                    else "no optional: true (it is required)"
                )
                errors.append(f"{where}: Secret {name} needs {should}")
        else:
            errors.append(
                f"{where}: Secret {name} is neither in the manifests nor one of the Secrets "
                f"{DEPLOY_DOC} creates ({', '.join(sorted(EXTERNAL_SECRETS))})"
            )
            continue
        for key in keys:
            if key not in known:
                errors.append(
                    f"{where}: Secret {name} has no key {key} (it has {', '.join(sorted(known))})"
                )
    return errors


SECRET_COMMAND = re.compile(r"create\s+secret\s+(generic|tls)\s+([a-z0-9-]+)((?:\\\n|[^\n])*)")


def documented_secrets(text: str) -> dict[str, set[str]]:
    """The Secrets a document's `kubectl create secret` commands create, with their keys."""
    found: dict[str, set[str]] = {}
    for kind, name, rest in SECRET_COMMAND.findall(text):
        keys = set(re.findall(r"--from-(?:literal|file)=([A-Za-z0-9._-]+)=", rest))
        if kind == "tls" and "--cert" in rest and "--key" in rest:
            keys |= {"tls.crt", "tls.key"}
        found.setdefault(name, set()).update(keys)
    return found


def secret_doc_errors(objects: list[dict], doc: Path) -> list[str]:
    """Every required external Secret the objects read has a command in the document that
    creates it with each of its keys (optional ones may be documented too, and should be)."""
    documented = documented_secrets(doc.read_text() if doc.exists() else "")
    needed = {
        name
        for _, _, name, _, _ in secret_references(objects)
        if name in EXTERNAL_SECRETS and name not in OPTIONAL_SECRETS
    }
    errors = []
    for name in sorted(needed):
        missing = EXTERNAL_SECRETS[name] - documented.get(name, set())
        if missing:
            errors.append(
                f"{doc.name}: no `kubectl create secret` command creates Secret {name} with "
                f"{', '.join(sorted(missing))}"
            )
    return errors


def routes_private_path(path: dict) -> str | None:
    """The private path (PRIVATE_PATHS) an HTTPRoute path match lets through, if any."""
    value = path.get("value", "/")
    kind = path.get("type", "PathPrefix")
    for private in PRIVATE_PATHS:
        if value.startswith(private.rstrip("/")):
            return private
        if kind == "PathPrefix" and private.startswith(value.rstrip("/") + "/"):
            return private
    return None


def gateway_errors(objects: list[dict]) -> list[str]:
    """Gateway API routes: each attaches to a listener of an existing Gateway whose hostname
    covers its own; plain-HTTP listeners only redirect; every backend is a Service port of the
    same namespace that targets a public container port (PUBLIC_PORT_NAMES), reached only
    through the Gateway (a ClusterIP Service); every rule that forwards names its paths, none of
    them private (PRIVATE_PATHS); every HTTPS listener has a certificate."""
    errors = []
    gateways = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o.get("kind") == "Gateway"
    }
    services = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o.get("kind") == "Service"
    }
    templates = list(pod_templates(objects))
    for gateway in gateways.values():
        for listener in gateway.get("spec", {}).get("listeners", []):
            if listener.get("protocol") == "HTTPS" and not (listener.get("tls") or {}).get(
                "certificateRefs"
            ):
                errors.append(
                    f"{name_of(gateway)}: HTTPS listener {listener.get('name')} has no certificate"
                )

    def covers(listener_host, route_host) -> bool:
        if not listener_host:
            return True
        if listener_host.startswith("*."):
            return route_host.endswith(listener_host[1:])
        return listener_host == route_host

    for route in (o for o in objects if o.get("kind") == "HTTPRoute"):
        namespace = route["metadata"].get("namespace")
        spec = route.get("spec", {})
        rules = spec.get("rules", [])
        forwards = any(r.get("backendRefs") for r in rules)
        for ref in spec.get("parentRefs", []):
            gateway = gateways.get((ref.get("namespace", namespace), ref.get("name")))
            if gateway is None:
                errors.append(
                    f"{name_of(route)}: parentRef names Gateway {ref.get('name')}, which does not exist"
                )
                continue
            listeners = [
                l
                for l in gateway["spec"].get("listeners", [])
                if ref.get("sectionName") in (None, l.get("name"))
            ]
            if not listeners:
                errors.append(
                    f"{name_of(route)}: Gateway {ref.get('name')} has no listener {ref.get('sectionName')}"
                )
            for listener in listeners:
                if listener.get("protocol") == "HTTP" and forwards:
                    errors.append(
                        f"{name_of(route)}: forwards plain-HTTP traffic of listener {listener.get('name')} "
                        "(plain HTTP may only redirect to HTTPS)"
                    )
                for host in spec.get("hostnames", []):
                    if not covers(listener.get("hostname"), host):
                        errors.append(
                            f"{name_of(route)}: hostname {host} is not served by listener "
                            f"{listener.get('name')} ({listener.get('hostname')})"
                        )
        for index, rule in enumerate(rules):
            if not rule.get("backendRefs"):
                continue
            matches = rule.get("matches", [])
            if not matches or any("path" not in m for m in matches):
                errors.append(
                    f"{name_of(route)}: rule {index} forwards every path; name the public ones"
                )
            for match in matches:
                private = routes_private_path(match.get("path", {}))
                if private:
                    errors.append(
                        f"{name_of(route)}: rule {index} path {match['path'].get('value')} lets the "
                        f"private path {private} through"
                    )
            for backend in rule["backendRefs"]:
                if backend.get("kind", "Service") != "Service":
                    continue
                svc = services.get((backend.get("namespace", namespace), backend.get("name")))
                if svc is None:
                    errors.append(
                        f"{name_of(route)}: backend Service {backend.get('name')} does not exist"
                    )
                    continue
                port = next(
                    (
                        p
                        for p in svc["spec"].get("ports", [])
                        if p.get("port") == backend.get("port")
                    ),
                    None,
                )
                if port is None:
                    errors.append(
                        f"{name_of(route)}: Service {backend.get('name')} has no port {backend.get('port')}"
                    )
                    continue
                if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
                    errors.append(
                        f"{name_of(route)}: Service {backend.get('name')} is {svc['spec'].get('type')}, "
                        "reachable around the Gateway in plain HTTP (make it ClusterIP)"
                    )
                target = port.get("targetPort", port.get("port"))
                names = {
                    p.get("name")
                    for _, ns, t in templates
                    if ns == svc["metadata"].get("namespace")
                    and selects(
                        svc["spec"].get("selector") or {}, t.get("metadata", {}).get("labels", {})
                    )
                    for c in containers_of(t)
                    for p in c.get("ports", [])
                    if p.get("name") == target or p.get("containerPort") == target
                }
                if not names or not names <= PUBLIC_PORT_NAMES:
                    errors.append(
                        f"{name_of(route)}: Service {backend.get('name')} port {backend.get('port')} "
                        f"targets container port {target} ({', '.join(sorted(filter(None, names))) or 'unnamed'}), "
                        f"not a public one ({', '.join(sorted(PUBLIC_PORT_NAMES))})"
                    )
    return errors


FROM_LINE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE)


def dockerfile_from_errors(dockerfile: Path) -> list[str]:
    """Every FROM that is not an earlier stage (or scratch) names an image with a pinned tag.
    (checkov's CKV_DOCKER_7 cannot tell `FROM binaries-${BINARIES}`, a stage chosen by a build
    argument, from an untagged image; this check replaces it.)"""
    errors = []
    stages: set[str] = set()
    args = {}
    for line in dockerfile.read_text().splitlines():
        arg = re.match(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)", line)
        if arg and not stages:
            args[arg.group(1)] = arg.group(2)
        match = FROM_LINE.match(line)
        if not match:
            continue
        image, stage = match.group(1), match.group(2)
        resolved = re.sub(
            r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), image
        )
        if resolved.lower() != "scratch" and resolved not in stages:
            if "$" in resolved:
                errors.append(
                    f"{dockerfile.name}: FROM {image}: a build argument without a default"
                )
            else:
                error = image_tag_error(resolved)
                if error:
                    errors.append(f"{dockerfile.name}: FROM {image}: {error}")
        if stage:
            stages.add(stage)
    return errors


def dockerfile_skip_errors(dockerfile: Path) -> list[str]:
    errors = []
    for line in dockerfile.read_text().splitlines():
        match = DOCKERFILE_SKIP.search(line)
        if match and not match.group(2).lstrip(": ").strip():
            errors.append(
                f"{dockerfile.name}: checkov skip {match.group(1)} gives no reason (write ID: reason)"
            )
    return errors


# --- 4. checkov ---------------------------------------------------------------------------------


def checkov(paths: list[Path]) -> tuple[bool, str]:
    """Runs checkov over the given manifest files and Dockerfiles. Returns (passed, report).
    Files are named one by one: checkov ignores -f when -d is given too."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "checkov"),
            "--quiet",
            "--compact",
            # Offline: no policy metadata from the vendor's service.
            "--skip-download",
            "--framework",
            "kubernetes",
            "dockerfile",
            "--output",
            "json",
            "--file",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
    )
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError:
        return (
            False,
            f"checkov exited {result.returncode} without a report:\n{result.stdout}{result.stderr}",
        )
    reports = reports if isinstance(reports, list) else [reports]
    lines = []
    for report in reports:
        summary = report.get("summary", {})
        lines.append(
            f"checkov {report.get('check_type')}: {summary.get('passed')} passed, "
            f"{summary.get('failed')} failed, {summary.get('skipped')} skipped, "
            f"{summary.get('parsing_errors')} unparsable"
        )
        for failed in report.get("results", {}).get("failed_checks", []):
            lines.append(
                f"  FAILED {failed['check_id']} {failed['check_name']}: "
                f"{failed['resource']} ({failed['file_path']})"
            )
    passed = result.returncode == 0 and all(
        r.get("summary", {}).get("failed", 1) == 0
        and r.get("summary", {}).get("parsing_errors", 1) == 0
        for r in reports
    )
    return passed, "\n".join(lines)


def repository_checkov_paths(repo: Path = REPO) -> list[Path]:
    manifests = sorted(p for p in (repo / "k8s").rglob("*.yaml") if p.name != "kustomization.yaml")
    return manifests + [repo / p for p in PLAIN_MANIFESTS] + [repo / d for d in DOCKERFILES]


# --- the whole check ----------------------------------------------------------------------------


# The example alerting rules (not rendered by any kustomization: the kind is the Prometheus
# Operator's) and the dashboard's metrics they must name.
PROMETHEUS_RULE = "k8s/components/custom-metrics/prometheus-rule.example.yaml"
DASHBOARD_METRICS = "dashboard/src/metrics.rs"


def prometheus_rule_errors(rule_file: Path, metrics_source: Path) -> list[str]:
    """The example PrometheusRule's shape, and every crowd_* metric of its expressions being
    one the dashboard registers (names built as crowd_{camera,group}_{people_now,level})."""
    source = metrics_source.read_text()
    exported = set(re.findall(r'"(crowd_[a-z_]+)"', source))
    if 'format!("crowd_{what}_people_now")' in source:
        for what in ("camera", "group"):
            exported |= {f"crowd_{what}_people_now", f"crowd_{what}_level"}
    errors = []
    objects = load(rule_file)
    if [o.get("kind") for o in objects] != ["PrometheusRule"]:
        return [f"{rule_file.name}: expected one PrometheusRule"]
    for group in objects[0].get("spec", {}).get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            if not name or not isinstance(rule.get("expr"), str):
                errors.append(f"{rule_file.name}: a rule without alert/record name or expr")
                continue
            for metric in re.findall(r"\bcrowd_[a-z_]+", rule["expr"]):
                if metric not in exported:
                    errors.append(f"{rule_file.name}: {name} uses {metric}, not a dashboard metric")
    return errors


def check_repository(repo: Path = REPO) -> list[str]:
    """Every error of checks 1-3 over the repository's manifests (empty: all good)."""
    errors = []
    every_object = []
    for kustomization in KUSTOMIZATIONS:
        try:
            objects = render(repo / kustomization)
        except RenderError as e:
            errors.append(str(e))
            continue
        print(f"rendered {kustomization}/: {len(objects)} objects")
        errors += schema_errors(objects)
        errors += consistency_errors(objects)
        errors += secret_errors(objects)
        errors += gateway_errors(objects)
        every_object += objects
    errors += secret_doc_errors(every_object, repo / DEPLOY_DOC)
    for manifest in PLAIN_MANIFESTS:
        objects = load(repo / manifest)
        print(f"read {manifest}: {len(objects)} objects")
        errors += schema_errors(objects)
        errors += consistency_errors(objects)
    errors += prometheus_rule_errors(repo / PROMETHEUS_RULE, repo / DASHBOARD_METRICS)
    for dockerfile in DOCKERFILES:
        errors += dockerfile_skip_errors(repo / dockerfile)
        errors += dockerfile_from_errors(repo / dockerfile)
    return errors


def main() -> int:
    errors = check_repository()
    for error in errors:
        print(f"ERROR {error}")
    print(
        f"render, schema (Kubernetes {', '.join(KUBERNETES_VERSIONS)}), consistency: "
        f"{len(errors)} errors"
    )
    passed, report = checkov(repository_checkov_paths())
    print(report)
    return 0 if not errors and passed else 1


if __name__ == "__main__":
    sys.exit(main())
