"""A process kubelet: runs the pods a `ServedCluster` holds as local processes, each in its own mount namespace.

What it does for a pod, in the order a kubelet does:
1. gives it an IP: a loopback address of its own (127.x.y.z), or, when Services select the pod, the address
   those Services resolve to (a stand-in for kube-proxy: service name -> the one pod behind it);
2. prepares its volumes: a PersistentVolumeClaim is a directory per bound volume (so two claims on one
   PersistentVolume share files, like NFS), ``emptyDir`` a fresh directory, ``configMap``/``secret`` the object's
   keys written as files (``items`` and ``defaultMode`` honoured); ``fsGroup`` is applied to claim and emptyDir
   directories (group-owned, setgid, group-writable);
3. runs the init containers one after the other, then the first container, each as
   ``unshare --mount`` + ``sh``: the pod gets its own ``/home`` (tmpfs), copy-on-write overlays of the top-level
   directories it mounts into (``/etc``, ``/opt``, ``/usr``, ``/srv``, ``/run``), an ``/etc/hosts`` with the
   namespace's Services (and other namespaces' by ``<name>.<namespace>[.svc[.cluster.local]]``), the service-account token/CA/namespace at ``/var/run/secrets/kubernetes.io/
   serviceaccount`` (unless ``automountServiceAccountToken: false``), every volumeMount bind-mounted at its
   ``mountPath`` (``subPath`` created if missing, ``readOnly`` remounted read-only) and its own ``/tmp``; then it
   drops to the container's ``runAsUser``/``runAsGroup`` (``setpriv``) in ``workingDir``;
4. env as Kubernetes builds it: ``value`` with ``$(VAR)`` expansion, ``valueFrom`` secretKeyRef/configMapKeyRef/
   fieldRef, ``envFrom``, the Services' ``{NAME}_SERVICE_HOST/PORT`` and ``KUBERNETES_SERVICE_HOST/PORT``;
5. reports the pod Running and ready with its podIP once the container process started (no readiness probes,
   as KubeSpawner's pods have none), Failed/Succeeded when it exits, and Events (Scheduled, Pulled, Started,
   BackOff) that KubeSpawner shows on the spawn page; on delete it sends SIGTERM, waits the grace period
   (at most 10 s), SIGKILLs and removes the pod.

The image is replaced by a local runtime (`Runtime`): the z2jh hub image by the venv with the hub image's pins,
the CHP image by the node configurable-http-proxy, any other image by a venv with jupyterhub-singleuser and
JupyterLab, behind an emulation of docker-stacks' ``start.sh`` (as root with ``NB_USER``: the home becomes
``/home/$NB_USER``, ``CHOWN_HOME`` chowns its top directory, the process drops to ``NB_UID``/``NB_GID``).

Not faithful: there is no network namespace, so each runtime binds to its pod IP instead of every interface
(the hub gets ``--JupyterHub.hub_bind_url=http://<pod ip>:8081``, CHP's empty ``--ip=``/``--api-ip=`` become the
pod IP, and a server's ``0.0.0.0`` in ``JUPYTERHUB_SERVICE_URL`` becomes the pod IP); Service ports are not
translated to target ports (reach a Service's pod on its targetPort); no resource limits, probes, restarts,
sidecars beyond the first container, image pulls or node scheduling; a Deployment becomes one Pod once
(`start_deployments`), not a controller loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import re
import shlex
import signal
import socket
import string
from dataclasses import dataclass, field
from pathlib import Path

from hubfleet.backends.kubernetes.cluster import NotFound
from hubfleet.backends.kubernetes.fake import parse_label_selector

from .kubeapi import KubeApiServer, now

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_GRACE = 10.0


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


class ProcessKubelet:
    """Attach to a served cluster: every Pod created from now on is run (see the module docstring).

    ``runtimes`` maps an image-name prefix to a Runtime; ``default_runtime`` is used for any other image.
    """

    def __init__(self, api: KubeApiServer, root: Path, runtimes: dict[str, Runtime], default_runtime: Runtime):
        self.api, self.cluster = api, api.cluster
        self.root = Path(root)
        self.runtimes, self.default_runtime = runtimes, default_runtime
        self.pods: dict[tuple[str, str], PodRun] = {}
        self._owners: dict[tuple[str, str], str] = {}  # (namespace, pod) -> the Deployment it was started for
        self._service_ips: dict[tuple[str, str], str] = {}  # (namespace, selector) -> IP
        self.cluster.graceful_pods = True
        self.cluster.listeners.append(self._on_change)

    # ------------------------------------------------------------------------------------ controllers

    def start_deployments(self, namespace: str, only: set[str] | None = None) -> list[str]:
        """Create one Pod per Deployment (replicas > 0), as the Deployment and ReplicaSet controllers would."""
        names = []
        for deploy in self.cluster.list("apps/v1", "Deployment", namespace):
            if deploy["spec"].get("replicas", 1) == 0 or (only is not None and deploy["metadata"]["name"] not in only):
                continue
            template = deploy["spec"]["template"]
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            name = f"{deploy['metadata']['name']}-{suffix}"
            self.cluster.create({"apiVersion": "v1", "kind": "Pod",
                                 "metadata": {**template.get("metadata", {}), "name": name, "namespace": namespace},
                                 "spec": template["spec"]})
            self._owners[(namespace, name)] = deploy["metadata"]["name"]
            names.append(name)
        return names

    def reconcile_deployments(self, only: set[str] | None = None) -> list[str]:
        """One pass of what the Deployment, ReplicaSet and namespace controllers do: a Deployment without a pod
        gets one; a pod whose Deployment (or namespace) is gone, or scaled to 0 replicas, is stopped; each
        Deployment's status counts its ready pods. Not a loop and no rollouts: a changed pod template does not
        replace a running pod. ``only``: these namespaces. Returns the pods started."""
        started = []
        namespaces = {ns["metadata"]["name"] for ns in self.cluster.list("v1", "Namespace")}
        if only is not None:  # these namespaces only (a test runs one hub of a fleet, not all its Deployments)
            namespaces &= only

        def scaled_up(ns: str) -> set[str]:
            return {d["metadata"]["name"] for d in self.cluster.list("apps/v1", "Deployment", ns)
                    if d["spec"].get("replicas", 1) != 0}

        for ns in namespaces:
            deployments = scaled_up(ns)
            have = {owner for (pod_ns, _), owner in self._owners.items() if pod_ns == ns}
            if deployments - have:
                started += self.start_deployments(ns, only=deployments - have)
        for (ns, name), owner in list(self._owners.items()):
            if only is not None and ns not in only:
                continue
            if ns in namespaces and owner in scaled_up(ns):
                continue
            del self._owners[(ns, name)]
            run = self.pods.get((ns, name))
            if run is not None:  # stopped gracefully (SIGTERM, grace period) and removed, as its ReplicaSet would
                self.api.run(self._terminate(run), timeout=60)
        for ns in namespaces:  # what `kubectl get deployment` shows: replicas, and how many pods are ready
            for deploy in self.cluster.list("apps/v1", "Deployment", ns):
                owned = [self.pods[k].pod for k, owner in self._owners.items()
                         if k[0] == ns and owner == deploy["metadata"]["name"] and k in self.pods]
                ready = 0
                for pod in owned:
                    with contextlib.suppress(NotFound):
                        live = self.cluster.get("v1", "Pod", ns, pod["metadata"]["name"])
                        ready += any(c.get("type") == "Ready" and c.get("status") == "True"
                                     for c in (live.get("status") or {}).get("conditions") or [])
                self.cluster.set_deployment_status(ns, deploy["metadata"]["name"], {
                    "replicas": len(owned), "readyReplicas": ready, "availableReplicas": ready})
        return started

    def logs(self, namespace: str, pod: str) -> str:
        out = []
        for path in sorted((self.root / namespace).glob(f"{pod}-*/logs/*.log"), key=lambda p: p.stat().st_mtime):
            out.append(f"==> {path.name} <==\n{path.read_text(errors='replace')}")
        return "\n".join(out)

    def stop_all(self) -> None:
        """Stop every pod's processes (teardown); waits for them."""
        async def stop() -> None:
            await asyncio.gather(*(self._terminate(run) for run in list(self.pods.values())),
                                 return_exceptions=True)
        self.api.run(stop(), timeout=60)

    # -------------------------------------------------------------------------------------- events

    def _on_change(self, kind: str, obj: dict) -> None:
        if obj.get("kind") != "Pod":
            return
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind == "ADDED":
            self.api.call(lambda: self._admit(obj))
        elif kind == "MODIFIED" and "deletionTimestamp" in obj["metadata"]:
            self.api.call(lambda: self._begin_stop(key))

    def _admit(self, pod: dict) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        # One folder per pod *instance* (a restarted server reuses its pod name).
        run = PodRun(pod=pod, ip=self._pod_ip(pod), root=self.root / ns / f"{name}-{pod['metadata']['uid'][:8]}")
        self.pods[(ns, name)] = run
        run.task = asyncio.get_running_loop().create_task(self._run(run))

    def _begin_stop(self, key: tuple[str, str]) -> None:
        run = self.pods.get(key)
        if run is None:
            self.cluster.remove_pod(*key)
            return
        if not run.stopping:
            asyncio.get_running_loop().create_task(self._terminate(run))

    async def _terminate(self, run: PodRun) -> None:
        ns, name = run.pod["metadata"]["namespace"], run.pod["metadata"]["name"]
        run.stopping = True
        proc = run.process
        if proc is not None and proc.returncode is None:
            grace = min(float(run.pod["spec"].get("terminationGracePeriodSeconds", 30)), MAX_GRACE)
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        if run.task is not None and not run.task.done():
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
        self.pods.pop((ns, name), None)
        self.cluster.remove_pod(ns, name)

    # ------------------------------------------------------------------------------------ a pod's life

    async def _run(self, run: PodRun) -> None:
        pod = run.pod
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.cluster.record_event(pod, "Scheduled", f"Successfully assigned {ns}/{name} to process-kubelet")
        try:
            volumes = await self._wait_volumes(run)
            for container in pod["spec"].get("initContainers") or []:
                proc = await self._start(run, container, volumes, init=True)
                code = await proc.wait()
                if code != 0:
                    tail = _tail(run.root / "logs" / f"{container['name']}.log")
                    raise PodFailed("BackOff", f"init container {container['name']} exited with {code}: {tail}")
            main = pod["spec"]["containers"][0]
            run.process = await self._start(run, main, volumes, init=False)
            started = now()

            def running(ready: bool) -> dict:
                return {
                    "phase": "Running", "podIP": run.ip, "podIPs": [{"ip": run.ip}], "hostIP": "127.0.0.1",
                    "startTime": started, "conditions": [{"type": "Ready", "status": str(ready)}],
                    "containerStatuses": [{"name": main["name"], "ready": ready, "started": True, "restartCount": 0,
                                           "image": main.get("image", ""), "state": {"running": {"startedAt": started}}}],
                }

            probe = (main.get("readinessProbe") or {}).get("httpGet")
            self.cluster.set_status(ns, name, running(probe is None))
            if probe is not None and await self._probe(run, main, probe):
                self.cluster.set_status(ns, name, running(True))
            code = await run.process.wait()
            if not run.stopping:
                self.cluster.set_status(ns, name, {
                    "phase": "Succeeded" if code == 0 else "Failed", "podIP": run.ip,
                    "containerStatuses": [{"name": main["name"], "ready": False, "restartCount": 0,
                                           "image": main.get("image", ""),
                                           "state": {"terminated": {"exitCode": code, "finishedAt": now()}}}],
                })
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a kubelet bug shows as a failed pod, not a silent hang
            if not isinstance(exc, PodFailed):
                exc = PodFailed("KubeletError", f"{type(exc).__name__}: {exc}")
            self.cluster.record_event(pod, exc.reason, str(exc), "Warning")
            phase = "Failed" if pod["spec"].get("restartPolicy") == "Never" else "Pending"
            self.cluster.set_status(ns, name, {"phase": phase, "message": str(exc), "reason": exc.reason})

    async def _probe(self, run: PodRun, container: dict, probe: dict) -> bool:
        """An httpGet readiness probe, until it first succeeds (True) or the container exits (False)."""
        import httpx

        port = probe.get("port")
        if isinstance(port, str):  # a named container port
            port = next(p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port)
        url = f"http://{run.ip}:{port}{probe.get('path', '/')}"
        period = float(probe.get("periodSeconds", (container.get("readinessProbe") or {}).get("periodSeconds", 1)))
        async with httpx.AsyncClient(timeout=2) as client:
            while run.process is not None and run.process.returncode is None:
                with contextlib.suppress(httpx.HTTPError):
                    if 200 <= (await client.get(url)).status_code < 400:
                        return True
                await asyncio.sleep(min(period, 0.5))
        return False

    async def _wait_volumes(self, run: PodRun, attempts: int = 30) -> dict[str, Path]:
        for _ in range(attempts):
            try:
                return self._volumes(run)
            except NotFound as exc:
                self.cluster.record_event(run.pod, "FailedMount", str(exc), "Warning")
                await asyncio.sleep(1)
        raise PodFailed("FailedMount", f"volumes of {run.pod['metadata']['name']} never became available")

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


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


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


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
