"""What a pod's container is given by the process kubelet (kubelet.py): its runtime, volumes, mounts and env.

Steps 2 to 4 of kubelet.py's list: the volumes a pod's claims, emptyDirs, configMaps and secrets become; the
``unshare --mount`` script that bind-mounts them and the service-account files; the environment Kubernetes would
build (``$(VAR)`` expansion, ``valueFrom``, ``envFrom``, the Services' variables); and the addresses Services
resolve to. ``ProcessKubelet`` runs pods with it; this part reads the served cluster and touches only the pod's
own directory.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubfleet.backends.kubernetes.cluster import NotFound
from hubfleet.backends.kubernetes.fake import parse_label_selector

from .kubeapi import now

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Runtime:
    """What stands in for an image: directories put first on PATH, and the image's own environment."""

    name: str
    path: list[str]
    env: dict[str, str] = field(default_factory=dict)
    docker_stacks: bool = False  # emulate docker-stacks start.sh (NB_USER, CHOWN_HOME, drop to NB_UID)
    workdir: str = "/"  # the image's WORKDIR, used when the container sets no workingDir


@dataclass
class PodRun:
    pod: dict
    ip: str
    root: Path
    task: asyncio.Task | None = None
    process: asyncio.subprocess.Process | None = None
    stopping: bool = False


class PodFailed(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class PodSetup:
    """The container-facing half of ``ProcessKubelet`` (which sets these attributes)."""

    api: Any
    cluster: Any
    root: Path
    runtimes: dict[str, Runtime]
    default_runtime: Runtime
    _service_ips: dict[tuple[str, str], str]

    def _volumes(self, run: PodRun) -> dict[str, Path]:
        pod, ns = run.pod, run.pod["metadata"]["namespace"]
        fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        out: dict[str, Path] = {}
        for vol in pod["spec"].get("volumes") or []:
            name = vol["name"]
            if "persistentVolumeClaim" in vol:
                claim = self.cluster.get("v1", "PersistentVolumeClaim", ns, vol["persistentVolumeClaim"]["claimName"])
                bound = claim["spec"].get("volumeName") or f"{ns}-{claim['metadata']['name']}"
                path = self.root / "_volumes" / bound
                _make_dir(path, fs_group)
            elif "emptyDir" in vol:
                path = run.root / "volumes" / name
                _make_dir(path, fs_group)
            elif "configMap" in vol or "secret" in vol:
                path = run.root / "volumes" / name
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o755)
                self._write_keys(ns, vol, path)
            else:
                raise PodFailed("FailedMount", f"volume {name}: only persistentVolumeClaim, emptyDir, configMap "
                                               "and secret volumes are supported by the process kubelet")
            out[name] = path
        return out

    def _write_keys(self, ns: str, vol: dict, path: Path) -> None:
        if "configMap" in vol:
            src = vol["configMap"]
            obj = self.cluster.get("v1", "ConfigMap", ns, src["name"])
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        else:
            src = vol["secret"]
            obj = self.cluster.get("v1", "Secret", ns, src["secretName"])
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        mode = src.get("defaultMode", 0o644)
        items = src.get("items") or [{"key": k, "path": k} for k in data]
        # The kubelet's atomic-writer layout: the files live in a timestamped folder, `..data` points at it and
        # each top-level entry is a symlink through `..data` (seeding relies on `..data`, as on a cluster).
        stamp = f"..{now().replace(':', '_')}.{random.randint(0, 10**6)}"
        (path / stamp).mkdir()  # an empty Secret or ConfigMap is an empty folder, not a failed mount
        for item in items:
            target = path / stamp / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])
            target.chmod(item.get("mode", mode))
        (path / stamp).chmod(0o755)
        (path / "..data").symlink_to(stamp)
        for top in {item["path"].split("/")[0] for item in items}:
            (path / top).symlink_to(f"..data/{top}")

    # ------------------------------------------------------------------------------------- processes

    def _runtime(self, image: str) -> Runtime:
        for prefix, runtime in self.runtimes.items():
            if image.startswith(prefix):
                return runtime
        return self.default_runtime

    async def _start(self, run: PodRun, container: dict, volumes: dict[str, Path], init: bool):
        pod, ns = run.pod, run.pod["metadata"]["namespace"]
        runtime = self._runtime(container.get("image", ""))
        self.cluster.record_event(pod, "Pulled", f'Container image "{container.get("image")}" is "present" '
                                                 f"(runtime {runtime.name})")
        services = self._services(ns)
        env = {"PATH": ":".join([*runtime.path, SYSTEM_PATH]), "HOSTNAME": pod["metadata"]["name"],
               **runtime.env, **self._service_env(services)}
        env.update(self._container_env(pod, container, env, run.ip))
        pod_sc, sc = pod["spec"].get("securityContext") or {}, container.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser", 0))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", 0 if uid == 0 else uid))
        groups = [g for g in [pod_sc.get("fsGroup"), *pod_sc.get("supplementalGroups", [])] if g is not None]
        argv = [_expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
        # The image's own home directory (docker-stacks images ship /home/jovyan, owned by jovyan).
        home_setup = "mkdir -p /home/jovyan && chown 1000:100 /home/jovyan\n" if runtime.docker_stacks else ""
        if runtime.name == "hub":
            argv.append(f"--JupyterHub.hub_bind_url=http://{run.ip}:8081")
        elif runtime.name == "proxy":
            argv = [f"--ip={run.ip}" if a == "--ip=" else f"--api-ip={run.ip}" if a == "--api-ip=" else a
                    for a in argv]
        elif not init:
            env = {k: v.replace("://0.0.0.0:", f"://{run.ip}:") for k, v in env.items()}
        if runtime.docker_stacks and not init:
            user = env.get("NB_USER", "jovyan")
            env["HOME"] = f"/home/{user}"
            env["USER"] = env["LOGNAME"] = user
            if uid == 0 and env.get("NB_USER"):
                uid, gid = int(env.get("NB_UID", "1000")), int(env.get("NB_GID", "100"))
                home_setup += f"mkdir -p {shlex.quote(env['HOME'])}\n"
                if env.get("CHOWN_HOME") in ("1", "yes"):
                    home_setup += f"chown {uid}:{gid} {shlex.quote(env['HOME'])}\n"
                home_setup += (f"echo {shlex.quote(f'{user}:x:{uid}:{gid}::/home/{user}:/bin/bash')} "
                               ">> /etc/passwd\n")
        if not argv:
            raise PodFailed("CreateContainerConfigError", f"container {container['name']}: no command for the "
                                                          f"{runtime.name} runtime")
        script = self._mount_script(run, container, volumes, services, home_setup)
        workdir = container.get("workingDir") or (env["HOME"] if runtime.docker_stacks else runtime.workdir)
        drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
        drop += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
        # The container runtime creates a missing workingDir (runc does, as root) rather than failing.
        script += f"mkdir -p {shlex.quote(workdir)}\ncd {shlex.quote(workdir)}\nexec {shlex.join(drop)} -- {shlex.join(argv)}\n"
        logs = run.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"{container['name']}.log", "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                "unshare", "--mount", "--propagation", "private", "sh", "-ec", script,
                env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()
        self.cluster.record_event(pod, "Started", f"Started container {container['name']}")
        return proc

    def _mount_script(self, run: PodRun, container: dict, volumes: dict[str, Path], services: list[dict],
                      home_setup: str) -> str:
        q = shlex.quote
        layers = run.root / "layers" / container["name"]
        layers.mkdir(parents=True, exist_ok=True)
        mounts = list(container.get("volumeMounts") or [])
        sa = None
        if run.pod["spec"].get("automountServiceAccountToken", True) is not False:
            sa = run.root / "serviceaccount"
            sa.mkdir(exist_ok=True)
            (sa / "token").write_text(self.api.token)
            (sa / "ca.crt").write_bytes((self.api.ca_dir / "ca.crt").read_bytes())
            (sa / "namespace").write_text(run.pod["metadata"]["namespace"])
            sa.chmod(0o755)
        targets = [m["mountPath"] for m in mounts] + ([SA_DIR] if sa else [])
        # A mount point in a top-level directory the host lacks would be made by mkdir in the host's own root
        # (only directories that exist can be overlaid): refuse rather than litter the machine.
        stray = [t for t in targets if _top(t) == "/" and not t.startswith(("/home/", "/tmp/"))]
        if stray:
            raise PodFailed("FailedMount", f"mount path(s) {', '.join(stray)}: the process kubelet mounts only "
                                           "below a top-level directory that exists on this machine (e.g. /srv)")
        tops = sorted({"/etc"} | {_top(t) for t in targets} - {"/home", "/tmp", "/"})
        lines = [f"mount -t tmpfs -o size=16m tmpfs {q(str(layers))}", "mount -t tmpfs -o mode=0755 tmpfs /home"]
        for top in tops:
            up, work = f"{layers}/{top.strip('/')}-up", f"{layers}/{top.strip('/')}-work"
            lines += [f"mkdir -p {q(up)} {q(work)}",
                      f"mount -t overlay overlay -o lowerdir={q(top)},upperdir={q(up)},workdir={q(work)} {q(top)}"]
        # The pod's loopback is its own IP here (no network namespace): the chart's culler calls localhost:8081.
        hosts = [f"{run.ip} localhost {run.pod['metadata']['name']}"]
        ns = run.pod["metadata"]["namespace"]
        for svc in services:
            n = svc["metadata"]["name"]
            hosts.append(f"{svc['_ip']} {n} {n}.{ns} {n}.{ns}.svc {n}.{ns}.svc.cluster.local")
        # Other namespaces' Services by their qualified names only, as cluster DNS answers them (a hub reaching
        # the fleet portal at hubfleet-portal.hubfleet-system.svc.cluster.local).
        for other in self.cluster.list("v1", "Namespace", None):
            o = other["metadata"]["name"]
            for svc in self._services(o) if o != ns else []:
                n = svc["metadata"]["name"]
                hosts.append(f"{svc['_ip']} {n}.{o} {n}.{o}.svc {n}.{o}.svc.cluster.local")
        lines.append(f"printf '%s\\n' {' '.join(q(h) for h in hosts)} > /etc/hosts")
        for m in mounts:
            src = volumes[m["name"]]
            if m.get("subPath"):
                src = src / m["subPath"]
                if not src.exists():
                    _make_dir(src, None)
            lines.append(_bind(str(src), m["mountPath"], src.is_dir(), bool(m.get("readOnly"))))
        if sa:
            lines.append(_bind(str(sa), SA_DIR, True, True))
        if not any(t == "/tmp" or t.startswith("/tmp/") for t in targets):
            lines.append("mount -t tmpfs -o mode=1777 tmpfs /tmp")
        return "\n".join(lines) + "\n" + home_setup

    def _container_env(self, pod: dict, container: dict, base: dict[str, str], ip: str) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for src in container.get("envFrom") or []:
            ref = src.get("secretRef") or src.get("configMapRef")
            kind = "Secret" if "secretRef" in src else "ConfigMap"
            obj = self._get_or_none(kind, ns, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise PodFailed("CreateContainerConfigError", f'{kind.lower()} "{ref["name"]}" not found')
            data = obj.get("data") or {}
            env.update({src.get("prefix", "") + k: base64.b64decode(v).decode() if kind == "Secret" else v
                        for k, v in data.items()})
        for var in container.get("env") or []:
            if "valueFrom" not in var:
                env[var["name"]] = _expand(var.get("value", ""), {**base, **env})
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": ns,
                          "metadata.uid": pod["metadata"].get("uid", ""), "status.podIP": ip,
                          "spec.nodeName": "process-kubelet", "status.hostIP": "127.0.0.1",
                          "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default")}
                env[var["name"]] = fields.get(path, "")
                continue
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
            obj = self._get_or_none(kind, ns, ref["name"])
            data = (obj or {}).get("data") or {}
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise PodFailed("CreateContainerConfigError",
                                f'{kind.lower()} "{ref["name"]}" has no key {ref["key"]!r} (or does not exist)')
            value = data[ref["key"]]
            env[var["name"]] = base64.b64decode(value).decode() if kind == "Secret" else value
        return env

    def _get_or_none(self, kind: str, ns: str, name: str) -> dict | None:
        try:
            return self.cluster.get("v1", kind, ns, name)
        except NotFound:
            return None

    # ------------------------------------------------------------------------------------ networking

    def _services(self, ns: str) -> list[dict]:
        out = []
        for svc in self.cluster.list("v1", "Service", ns):
            selector = svc["spec"].get("selector")
            if not selector:
                continue
            svc["_ip"] = self._service_ip(ns, selector)
            out.append(svc)
        return out

    def _service_ip(self, ns: str, selector: dict) -> str:
        key = (ns, ",".join(f"{k}={v}" for k, v in sorted(selector.items())))
        if key not in self._service_ips:
            self._service_ips[key] = _free_ip([])
        return self._service_ips[key]

    def _pod_ip(self, pod: dict) -> str:
        labels = pod["metadata"].get("labels") or {}
        ns = pod["metadata"]["namespace"]
        for svc in self.cluster.list("v1", "Service", ns):
            selector = svc["spec"].get("selector")
            if selector and parse_label_selector(",".join(f"{k}={v}" for k, v in selector.items()))(labels):
                return self._service_ip(ns, selector)
        ports = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []]
        return _free_ip(ports)

    def _service_env(self, services: list[dict]) -> dict[str, str]:
        env = {"KUBERNETES_SERVICE_HOST": self.api.host, "KUBERNETES_SERVICE_PORT": str(self.api.port),
               "KUBERNETES_SERVICE_PORT_HTTPS": str(self.api.port)}
        for svc in services:
            prefix = svc["metadata"]["name"].upper().replace("-", "_")
            ports = svc["spec"].get("ports") or []
            env[f"{prefix}_SERVICE_HOST"] = svc["_ip"]
            if ports:
                env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
            for port in ports:
                if port.get("name"):
                    env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        return env



# ------------------------------------------------------------------------------------------------ helpers


def _make_dir(path: Path, fs_group: int | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if fs_group is not None:
        os.chown(path, -1, fs_group)
        path.chmod(0o2775)
    else:
        path.chmod(0o755)


def _top(path: str) -> str:
    """The top-level directory a path lands in once symlinks are followed (/var/run -> /run)."""
    probe = path
    while probe != "/" and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    real = os.path.realpath(probe)
    parts = [p for p in real.split("/") if p]
    return "/" + parts[0] if parts else "/"


def _bind(src: str, target: str, is_dir: bool, read_only: bool) -> str:
    q = shlex.quote
    make = f"mkdir -p {q(target)}" if is_dir else f"mkdir -p {q(os.path.dirname(target))} && touch {q(target)}"
    line = f"{make} && mount --bind {q(src)} {q(target)}"
    if read_only:
        line += f" && mount -o remount,bind,ro {q(target)}"
    return line


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values; an unknown $(VAR) is left as written."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _free_ip(ports: list[int]) -> str:
    """A random 127/8 address on which every one of ``ports`` is free."""
    for _ in range(100):
        ip = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind((ip, port))
        except OSError:
            continue
        return ip
    raise RuntimeError("no free loopback address")
