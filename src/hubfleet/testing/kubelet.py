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
import contextlib
import os
import random
import signal
import string
from pathlib import Path

from hubfleet.backends.kubernetes.cluster import NotFound

from .kubeapi import KubeApiServer, now
from .podsetup import PodFailed, PodRun, PodSetup, Runtime

MAX_GRACE = 10.0


class ProcessKubelet(PodSetup):
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


# ------------------------------------------------------------------------------------------------ helpers


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
