"""Offline checks of the Kubernetes manifests (no cluster, no Docker engine needed).

1. render: `kubectl kustomize` builds the base (k8s/) and every overlay.
2. schema: every rendered object, and metric-server-components.yaml, against the Kubernetes
   OpenAPI schema (kubernetes-validate's strict schemas: unknown fields and wrong types fail), for
   the oldest and the newest Kubernetes version we support. It reports the first fault of each
   object (kubernetes-validate stops there).
3. consistency: what the schema cannot see (see `consistency_errors`).
4. checkov: security and good-practice policies over k8s/, metric-server-components.yaml and
   the Dockerfile; every skip must carry its reason.

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

REPO = Path(__file__).resolve().parents[2]
# What `kubectl apply -k` is pointed at: the base and each overlay.
KUSTOMIZATIONS = ("k8s", "k8s/overlays/custom-metrics")
# Applied with `kubectl apply -f`, as they are.
PLAIN_MANIFESTS = ("metric-server-components.yaml",)
DOCKERFILES = ("Dockerfile",)
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

    for obj in objects:
        for key, value in (obj.get("metadata", {}).get("annotations") or {}).items():
            if CHECKOV_SKIP.match(key):
                _, _, reason = value.partition("=")
                if not reason.strip():
                    errors.append(
                        f"{name_of(obj)}: checkov skip {value!r} gives no reason (write ID=reason)"
                    )
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


def check_repository(repo: Path = REPO) -> list[str]:
    """Every error of checks 1-3 over the repository's manifests (empty: all good)."""
    errors = []
    for kustomization in KUSTOMIZATIONS:
        try:
            objects = render(repo / kustomization)
        except RenderError as e:
            errors.append(str(e))
            continue
        print(f"rendered {kustomization}/: {len(objects)} objects")
        errors += schema_errors(objects)
        errors += consistency_errors(objects)
    for manifest in PLAIN_MANIFESTS:
        objects = load(repo / manifest)
        print(f"read {manifest}: {len(objects)} objects")
        errors += schema_errors(objects)
        errors += consistency_errors(objects)
    for dockerfile in DOCKERFILES:
        errors += dockerfile_skip_errors(repo / dockerfile)
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
