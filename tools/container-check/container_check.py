"""The stack in containers, run as the manifests run it, checked end to end.

Reads the rendered base (`kubectl kustomize k8s`) and turns each workload's pod template into a
`docker run`: its image, user and group (runAsUser/runAsGroup, fsGroup as a supplementary group),
read-only root, dropped capabilities, no new privileges, CPU and memory limits, command and args
(with Kubernetes' $(VAR) expansion), environment (the generated crowd-settings ConfigMap, literal
values, Secret keys, resourceFieldRef), and volumes (Secret and ConfigMap volumes as read-only bind
mounts of files written here, emptyDir as tmpfs, volumeClaimTemplates as Docker volumes). Each
container joins a Docker network this check creates, under the names of the Services that select
its pod (so `redis`, `dashboard-ingest`, `image-predict` resolve as in the cluster); every
container port is published on 127.0.0.1 only, on a port Docker picks, and this check talks to
the containers only there.

Then: wait for each container's readiness probe (and run its startup and liveness probes once),
upload a dev photo with a camera key, see its count in the dashboard's summary and its photo
served, stop and start the dashboard and find everything still there, count the other dev photos
one by one while reading each container's CPU time from its cgroup, and remove everything it made.

Usage (tools/container-check/run.sh builds the images first):
  python container_check.py --redis-image IMAGE [--evalset DIR] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("DOCKER", "docker")
NAMESPACE = "crowd"
# Started in this order, each once the previous one is ready.
WORKLOADS = ("redis", "dashboard", "image-predict", "image-upload")
CAMERA = "container-check"
FIRST_PHOTO = "shtb_train_01.jpg"


def log(message: str) -> None:
    print(f"container-check: {message}", flush=True)


class CheckFailed(Exception):
    pass


def logs(container: str, lines: int = 30) -> str:
    """The container's last log lines (its stdout and stderr)."""
    return subprocess.run(
        [DOCKER, "logs", "--tail", str(lines), container],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ).stdout.rstrip()


def docker(*args: str, check: bool = True, capture: bool = True) -> str:
    result = subprocess.run([DOCKER, *args], capture_output=capture, text=True)
    if check and result.returncode != 0:
        raise CheckFailed(f"docker {' '.join(args[:3])} ...: {result.stderr.strip()}")
    return (result.stdout or "").strip()


# --- the manifests -------------------------------------------------------------------------------


def render() -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "k8s")], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * factor)
    return int(q)


def quantity_cores(q: str) -> float:
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values ($$ escapes)."""

    def one(match: re.Match) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, value)


class Stack:
    def __init__(self, objects: list[dict], secret_values: dict, images: dict, work: Path):
        self.objects = objects
        self.secret_values = secret_values  # {secret: {key: value}}
        self.images = images  # manifest image -> local image
        self.work = work
        self.suffix = f"{os.getpid()}"
        self.network = f"crowd-check-{self.suffix}"
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.network_made = False
        self.config_maps = {
            o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"
        }
        self.workloads = {
            o["metadata"]["name"]: o
            for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")
            and o["metadata"].get("namespace") == NAMESPACE
        }
        missing = [w for w in WORKLOADS if w not in self.workloads]
        if missing or set(self.workloads) - set(WORKLOADS):
            raise CheckFailed(
                f"the base's workloads are {sorted(self.workloads)}; this check runs {WORKLOADS}"
            )

    def name(self, workload: str) -> str:
        return f"crowd-check-{self.suffix}-{workload}"

    def aliases(self, labels: dict, container_ports: dict[str, int]) -> list[str]:
        """Names of the Services selecting these pod labels; each Service port must be the
        container port it targets, since Docker's network has no port translation."""
        names = []
        for svc in self.objects:
            if svc["kind"] != "Service" or svc["metadata"].get("namespace") != NAMESPACE:
                continue
            selector = svc["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                number = container_ports.get(target, target)
                if number != port["port"]:
                    raise CheckFailed(
                        f"Service {svc['metadata']['name']} maps {port['port']} to {number}: "
                        "this check needs them equal"
                    )
            names.append(svc["metadata"]["name"])
        return names

    def secret_value(self, name: str, key: str, optional: bool) -> str | None:
        value = self.secret_values.get(name, {}).get(key)
        if value is None and not optional:
            raise CheckFailed(f"the manifests need Secret {name} key {key}, which this check lacks")
        return value

    def env_of(self, container: dict, pod_spec: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_maps[source["configMapRef"]["name"]])
            else:
                raise CheckFailed(f"envFrom {source} is not handled by this check")
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = expand(var["value"], env)
                continue
            ref = var["valueFrom"]
            if "secretKeyRef" in ref:
                s = ref["secretKeyRef"]
                value = self.secret_value(s["name"], s["key"], s.get("optional", False))
                if value is not None:
                    env[var["name"]] = value
            elif "configMapKeyRef" in ref:
                c = ref["configMapKeyRef"]
                env[var["name"]] = self.config_maps[c["name"]][c["key"]]
            elif "resourceFieldRef" in ref:
                r = ref["resourceFieldRef"]
                resource = r["resource"]
                kind, _, what = resource.partition(".")
                quantity = container["resources"][kind][what]
                if what == "cpu":
                    divisor = quantity_cores(str(r.get("divisor", "1")))
                    env[var["name"]] = str(math.ceil(quantity_cores(str(quantity)) / divisor))
                else:
                    divisor = quantity_bytes(str(r.get("divisor", "1")))
                    env[var["name"]] = str(math.ceil(quantity_bytes(str(quantity)) / divisor))
            else:
                raise CheckFailed(f"env {var['name']}: {ref} is not handled by this check")
        return env

    def write_files(self, where: Path, files: dict[str, str], mode: int, group: int | None):
        where.mkdir(parents=True)
        where.chmod(0o755)
        for path, content in files.items():
            target = where / path
            target.write_text(content)
            if group is not None:
                os.chown(target, 0, group)
            target.chmod(mode)

    def docker_run_args(self, workload: str) -> tuple[list[str], dict]:
        """The `docker run` arguments of a workload's pod (one container), and what the check
        needs to know of it (probes, ports)."""
        obj = self.workloads[workload]
        template = obj["spec"]["template"]
        spec = template["spec"]
        if len(spec["containers"]) != 1 or spec.get("initContainers"):
            raise CheckFailed(f"{workload}: this check runs pods of one container")
        c = spec["containers"][0]
        pod_sc = spec.get("securityContext", {})
        sc = {**pod_sc, **c.get("securityContext", {})}
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        args = [
            "--name",
            self.name(workload),
            "--hostname",
            workload,
            "--network",
            self.network,
        ]
        for alias in self.aliases(template["metadata"]["labels"], ports):
            args += ["--network-alias", alias]
        user = sc.get("runAsUser")
        if user is None or not sc.get("runAsNonRoot"):
            raise CheckFailed(f"{workload}: no runAsUser / runAsNonRoot")
        args += ["--user", f"{user}:{sc.get('runAsGroup', user)}"]
        if "fsGroup" in pod_sc:
            args += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if "ALL" in sc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", "ALL"]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if sc.get("privileged"):
            raise CheckFailed(f"{workload}: privileged")
        # RuntimeDefault seccomp is Docker's default profile: nothing to add.
        limits = c.get("resources", {}).get("limits", {})
        if "cpu" in limits:
            args += ["--cpus", str(quantity_cores(str(limits["cpu"])))]
        if "memory" in limits:
            args += ["--memory", str(quantity_bytes(str(limits["memory"])))]
        args += ["--stop-timeout", str(spec.get("terminationGracePeriodSeconds", 30))]

        env = self.env_of(c, spec)
        env_file = self.work / f"{workload}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        env_file.chmod(0o600)
        args += ["--env-file", str(env_file)]

        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        for mount in c.get("volumeMounts", []):
            path, name = mount["mountPath"], mount["name"]
            if name in claims:
                volume = f"crowd-check-{self.suffix}-{workload}-{name}"
                docker("volume", "create", volume)
                self.volumes.append(volume)
                if "fsGroup" in pod_sc:
                    # What Kubernetes does to a volume for fsGroup: group-owned, setgid, writable.
                    docker(
                        "run",
                        "--rm",
                        "--network",
                        "none",
                        "-v",
                        f"{volume}:/mnt",
                        "--user",
                        "0",
                        self.images["debian"],
                        "sh",
                        "-c",
                        f"chgrp {pod_sc['fsGroup']} /mnt && chmod 2775 /mnt",
                    )
                args += ["-v", f"{volume}:{path}"]
                continue
            volume = volumes[name]
            if "emptyDir" in volume:
                size = volume["emptyDir"].get("sizeLimit")
                options = "rw,nosuid,nodev,mode=0777" + (
                    f",size={quantity_bytes(str(size))}" if size else ""
                )
                args += ["--tmpfs", f"{path}:{options}"]
            elif "secret" in volume or "configMap" in volume:
                source = volume.get("secret") or volume["configMap"]
                if "secret" in volume:
                    data = {
                        k: v for k, v in self.secret_values.get(source["secretName"], {}).items()
                    }
                    if not data and not source.get("optional"):
                        raise CheckFailed(f"{workload}: Secret {source['secretName']} is needed")
                else:
                    data = dict(self.config_maps[source["name"]])
                items = source.get("items")
                files = {i["path"]: data[i["key"]] for i in items} if items else data
                mode = source.get("defaultMode", 0o644)
                where = self.work / "volumes" / workload / name
                self.write_files(where, files, mode, pod_sc.get("fsGroup"))
                args += ["-v", f"{where}:{path}:ro"]
            else:
                raise CheckFailed(f"{workload}: volume {volume} is not handled by this check")
        if not sc.get("readOnlyRootFilesystem"):
            raise CheckFailed(f"{workload}: root filesystem is writable")

        for port in ports.values():
            args += ["-p", f"127.0.0.1::{port}"]

        image = self.images.get(c["image"], c["image"])
        command = [expand(a, env) for a in c.get("command", [])]
        cargs = [expand(a, env) for a in c.get("args", [])]
        if command:
            args += ["--entrypoint", command[0], image, *command[1:], *cargs]
        else:
            args += [image, *cargs]
        probes = {k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c}
        return args, {"ports": ports, "probes": probes, "env": env}


# --- talking to the containers (127.0.0.1 only) --------------------------------------------------


def published(container: str, port: int) -> int:
    out = docker("port", container, f"{port}/tcp")
    for line in out.splitlines():
        host, _, hport = line.rpartition(":")
        if host == "127.0.0.1":
            return int(hport)
    raise CheckFailed(f"{container}: port {port} is not published on 127.0.0.1 ({out!r})")


def http(
    method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout=30.0
):
    if not url.startswith("http://127.0.0.1:"):
        raise CheckFailed(f"refusing to talk to {url}: only 127.0.0.1")
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def probe_once(container: str, probe: dict, ports: dict[str, int]) -> tuple[bool, str]:
    if "httpGet" in probe:
        port = probe["httpGet"]["port"]
        port = ports.get(port, port)
        url = f"http://127.0.0.1:{published(container, port)}{probe['httpGet'].get('path', '/')}"
        try:
            status, _, _ = http("GET", url, timeout=probe.get("timeoutSeconds", 1) + 2)
        except (OSError, urllib.error.URLError) as e:
            return False, f"GET {url}: {e}"
        return 200 <= status < 400, f"GET {url}: {status}"
    if "tcpSocket" in probe:
        import socket

        port = probe["tcpSocket"]["port"]
        port = ports.get(port, port)
        try:
            socket.create_connection(("127.0.0.1", published(container, port)), timeout=2).close()
            return True, f"tcp {port}: open"
        except OSError as e:
            return False, f"tcp {port}: {e}"
    if "exec" in probe:
        result = subprocess.run(
            [DOCKER, "exec", container, *probe["exec"]["command"]], capture_output=True, text=True
        )
        return result.returncode == 0, f"exec {probe['exec']['command']}: exit {result.returncode}"
    raise CheckFailed(f"{container}: probe {probe} not handled")


def wait_ready(container: str, info: dict, budget_s: float) -> float:
    """Waits for the startup probe, then the readiness probe; runs the liveness probe once.
    Returns the seconds it took."""
    start = time.monotonic()
    probes, ports = info["probes"], info["ports"]
    for kind in ("startupProbe", "readinessProbe"):
        if kind not in probes:
            continue
        last = ""
        while True:
            state = docker("inspect", "-f", "{{.State.Status}}", container)
            if state != "running":
                raise CheckFailed(f"{container} is {state}:\n{logs(container)}")
            ok, last = probe_once(container, probes[kind], ports)
            if ok:
                break
            if time.monotonic() - start > budget_s:
                raise CheckFailed(f"{container}: {kind} failing after {budget_s:.0f} s: {last}")
            time.sleep(0.5)
    if "livenessProbe" in probes:
        ok, last = probe_once(container, probes["livenessProbe"], ports)
        if not ok:
            raise CheckFailed(f"{container}: livenessProbe fails: {last}")
    return time.monotonic() - start


def cgroup_cpu_ns(container: str) -> int | None:
    """CPU time used by a container so far, from its cgroup (v1 or v2, cgroupfs or systemd)."""
    cid = docker("inspect", "-f", "{{.Id}}", container)
    for path in (
        f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage",
        f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage",
        f"/sys/fs/cgroup/cpuacct/system.slice/docker-{cid}.scope/cpuacct.usage",
    ):
        if os.path.exists(path):
            return int(Path(path).read_text())
    for path in (
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat",
        f"/sys/fs/cgroup/docker/{cid}/cpu.stat",
    ):
        if os.path.exists(path):
            for line in Path(path).read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) * 1000
    return None


# --- the check ---------------------------------------------------------------------------------


def camera_key() -> tuple[str, str]:
    """A camera key and its line for the key file, in the format of the contract
    (`crowd keys new` prints the same)."""
    key_id = secrets.token_hex(4)
    key = f"crowd_k_{key_id}_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip(
        "="
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    return key, f"k_{key_id}  sha256:{digest}  {CAMERA}\n"


def summary_camera(summary: dict, camera: str) -> dict | None:
    return next((c for c in summary.get("cameras", []) if c.get("camera") == camera), None)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-image", required=True)
    parser.add_argument("--debian-image", default="debian:bookworm-slim")
    parser.add_argument("--evalset", default=str(REPO.parent / "shared" / "evalset" / "dev"))
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    options = parser.parse_args()
    evalset = Path(os.environ.get("CROWD_EVALSET_DIR", options.evalset))

    # SIGTERM (a CI time-out, a ^C in a parent) cleans up like an error does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    objects = render()
    key, key_line = camera_key()
    secret_values = {
        "crowd-ingest": {"token": base64.b64encode(secrets.token_bytes(32)).decode()},
        "crowd-redis": {"password": base64.b64encode(secrets.token_bytes(32)).decode()},
        "crowd-api-keys": {"api-keys": f"# made by tools/container-check\n{key_line}"},
        "crowd-viewer": {"token": secrets.token_urlsafe(24)},
    }
    images = {"redis": options.redis_image, "debian": options.debian_image}
    for o in objects:
        for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if c["image"].startswith("redis:"):
                images[c["image"]] = options.redis_image
    work = Path(tempfile.mkdtemp(prefix="crowd-check-", dir=REPO / "target" / "container-check"))
    stack = Stack(objects, secret_values, images, work)
    try:
        return run(stack, evalset, key, secret_values["crowd-viewer"]["token"], started)
    except CheckFailed as e:
        log(f"FAILED: {e}")
        for c in stack.containers:
            log(f"--- last log lines of {c}")
            print(logs(c, 15), flush=True)
        return 1
    finally:
        if options.keep:
            log(f"left running: {' '.join(stack.containers)} on network {stack.network}")
        else:
            for c in stack.containers:
                docker("rm", "-f", "-v", c, check=False)
            for v in stack.volumes:
                docker("volume", "rm", v, check=False)
            if stack.network_made:
                docker("network", "rm", stack.network, check=False)
            shutil.rmtree(work, ignore_errors=True)
            log("removed the containers, volumes and network it made")


def run(stack: Stack, evalset: Path, key: str, viewer: str, started: float) -> int:
    docker("network", "create", stack.network)
    stack.network_made = True
    infos = {}
    for workload in WORKLOADS:
        args, info = stack.docker_run_args(workload)
        infos[workload] = info
        name = stack.name(workload)
        stack.containers.append(
            name
        )  # before the run: a container that fails to start is removed too
        docker("run", "-d", *args)
        took = wait_ready(name, info, budget_s=180)
        log(
            f"{workload}: ready in {took:.1f} s ({' '.join(args[args.index('--user'):][:2])}, "
            f"read-only root, no capabilities, no new privileges)"
        )

    def url(workload: str, port_name: str, path: str) -> str:
        port = infos[workload]["ports"][port_name]
        return f"http://127.0.0.1:{published(stack.name(workload), port)}{path}"

    upload = url("image-upload", "http", f"/api/v1/cameras/{CAMERA}/photos")
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}
    photo = (evalset / FIRST_PHOTO).read_bytes()

    status, _, body = http("POST", upload, photo, {"Content-Type": "image/jpeg"})
    if status != 401:
        raise CheckFailed(
            f"an upload without a camera key was answered {status}, not 401: {body[:200]!r}"
        )
    log("upload without a key: 401")

    t = time.monotonic()
    status, _, body = http("POST", upload, photo, auth, timeout=120)
    if status != 200:
        raise CheckFailed(f"upload of {FIRST_PHOTO}: {status} {body[:300]!r}")
    answer = json.loads(body)
    log(
        f"uploaded {FIRST_PHOTO} for camera {CAMERA}: {answer['count']} people "
        f"({answer.get('method')}, {time.monotonic() - t:.2f} s)"
    )

    summary_url = url("dashboard", "http", "/api/v1/summary")
    viewer_auth = {"Authorization": f"Bearer {viewer}"}
    status, _, body = http("GET", summary_url)
    if status != 401:
        raise CheckFailed(f"the dashboard's summary without the viewer token: {status}, not 401")
    log("dashboard without the viewer token: 401")

    def wait_summary(predicate, what: str) -> dict:
        deadline = time.monotonic() + 30
        while True:
            status, _, body = http("GET", summary_url, headers=viewer_auth)
            if status == 200:
                summary = json.loads(body)
                if predicate(summary):
                    return summary
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"the dashboard's summary never showed {what}: {status} {body[:300]!r}"
                )
            time.sleep(0.5)

    summary = wait_summary(
        lambda s: (summary_camera(s, CAMERA) or {}).get("count") == answer["count"],
        f"camera {CAMERA} with {answer['count']}",
    )
    camera = summary_camera(summary, CAMERA)
    log(
        f"dashboard summary: camera {CAMERA} at {camera['count']}, "
        f"{summary['photos_total']} photo(s), {summary['counted_total']} people counted"
    )

    def photo_served() -> int:
        status, headers, body = http(
            "GET", url("dashboard", "http", camera["photo_url"]), headers=viewer_auth
        )
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if status != 200 or not content_type.startswith("image/jpeg") or body[:2] != b"\xff\xd8":
            raise CheckFailed(f"photo {camera['photo_url']}: {status} {content_type} {body[:40]!r}")
        return len(body)

    log(f"photo served: {camera['photo_url']} ({photo_served()} bytes of JPEG)")

    status, _, _ = http("GET", url("dashboard", "http", "/metrics"), headers=viewer_auth)
    if status != 404:
        raise CheckFailed(
            f"the dashboard's public port answers /metrics with {status}, not 404"
        )
    status, _, _ = http("GET", url("dashboard", "metrics", "/metrics"))
    if status != 200:
        raise CheckFailed(f"the dashboard's ops port answers /metrics with {status}, not 200")
    log("/metrics: 404 on the public port, 200 on the ops port")

    # Stop and start the dashboard: its history is in Redis; nothing may be lost.
    dashboard = stack.name("dashboard")
    t = time.monotonic()
    docker("stop", dashboard)
    docker("start", dashboard)
    took = wait_ready(dashboard, infos["dashboard"], budget_s=120)
    summary_url = url("dashboard", "http", "/api/v1/summary")  # the published port may change
    after = wait_summary(lambda s: summary_camera(s, CAMERA) is not None, f"camera {CAMERA}")
    for field in ("photos_total", "counted_total"):
        if after[field] != summary[field]:
            raise CheckFailed(f"after a restart {field} is {after[field]}, was {summary[field]}")
    stable = ("camera", "count", "timestamp_ms", "event_id", "photo_url")
    again = summary_camera(after, CAMERA)
    if any(again.get(f) != camera.get(f) for f in stable):
        raise CheckFailed(f"after a restart camera {CAMERA} is {again}, was {camera}")
    photo_served()
    log(
        f"dashboard stopped and started ({time.monotonic() - t:.1f} s, ready {took:.1f} s after start): "
        f"same totals, same camera, photo still served"
    )

    # The other dev photos, one at a time, with each container's CPU time read from its cgroup.
    names = [
        line.split(",")[0]
        for line in (evalset / "truth.csv").read_text().splitlines()[1:]
        if line and line.split(",")[0] != FIRST_PHOTO
    ]
    cpu_before = {w: cgroup_cpu_ns(stack.name(w)) for w in WORKLOADS}
    t = time.monotonic()
    by_method: dict[str, int] = {}
    for name in names:
        status, _, body = http("POST", upload, (evalset / name).read_bytes(), auth, timeout=120)
        if status != 200:
            raise CheckFailed(f"upload of {name}: {status} {body[:300]!r}")
        method = json.loads(body).get("method", "?")
        by_method[method] = by_method.get(method, 0) + 1
    wall = time.monotonic() - t
    expected = summary["photos_total"] + len(names)
    final = wait_summary(lambda s: s["photos_total"] == expected, f"{expected} photos")
    cpu_after = {w: cgroup_cpu_ns(stack.name(w)) for w in WORKLOADS}
    methods = ", ".join(f"{n} {m}" for m, n in sorted(by_method.items()))
    log(
        f"{len(names)} more photos ({methods}) one at a time in {wall:.1f} s; "
        f"the summary has {final['photos_total']} photos"
    )
    if None not in cpu_before.values() and None not in cpu_after.values():
        for w in WORKLOADS:
            used = (cpu_after[w] - cpu_before[w]) / 1e9
            log(
                f"  CPU of {w}: {used:.2f} s in all, {1000 * used / len(names):.1f} ms per photo, "
                f"{used / wall:.2f} cores on average"
            )
    else:
        log("  (no cgroup CPU accounting found: CPU per photo not measured)")

    log("image sizes:")
    for ref in sorted(
        {
            stack.images.get(
                stack.workloads[w]["spec"]["template"]["spec"]["containers"][0]["image"],
                stack.workloads[w]["spec"]["template"]["spec"]["containers"][0]["image"],
            )
            for w in WORKLOADS
        }
    ):
        size = int(docker("image", "inspect", "-f", "{{.Size}}", ref))
        log(f"  {ref}: {size / 1e6:.1f} MB")
    log(f"passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
