"""``hubfleet render``: the Kubernetes backend's files for a catalog on a date, for review or a GitOps repo.

Thin: load, plan, read the seed material, ``render_tree``, write. Writes nothing outside ``--out``; files of hubs no longer wanted are
left alone (removing a hub is the plan/apply step's decision, not a renderer's).
"""

from __future__ import annotations

from pathlib import Path

import typer

from hubfleet.cli.common import AtOption, CatalogArg, console, err_console, load_or_exit, today


def render(
    catalog: Path = CatalogArg,
    backend: str = typer.Option("kubernetes", "--backend", help="Only `kubernetes` renders files."),
    out: Path = typer.Option(..., "--out", help="Folder to write <hub>/values.yaml, <hub>/manifests.yaml, _fleet/."),
    at: str = AtOption,
    gitops: str = typer.Option(None, "--gitops", help="Also write <hub>/argocd.yaml or <hub>/flux.yaml."),
    controller_image: str = typer.Option(None, "--controller-image", help="The hubfleet image the controller runs."),
    catalog_git: str = typer.Option(None, "--catalog-git", help="Git repository the controller's git-sync pulls the catalog from."),
    catalog_git_ref: str = typer.Option("main", "--catalog-git-ref", help="Branch or tag of --catalog-git."),
    catalog_git_path: str = typer.Option("", "--catalog-git-path", help="The catalog's folder in --catalog-git."),
) -> None:
    """Render z2jh 4.4.0 values and namespace manifests for every hub the catalog wants on a date.

    Example: hubfleet render examples/university --backend kubernetes --out build/k8s --at 2026-10-03 --gitops argocd
    """
    from hubfleet.backends.kubernetes.gitops import KINDS, dump_yaml, render_tree
    from hubfleet.backends.kubernetes.material import read_material
    from hubfleet.plan import plan as make_plan

    if backend != "kubernetes":
        err_console.print(f"[red]--backend {backend}: only `kubernetes` renders files[/]")
        raise typer.Exit(2)
    if gitops is not None and gitops not in KINDS:
        err_console.print(f"[red]--gitops {gitops}: expected one of {', '.join(KINDS)}[/]")
        raise typer.Exit(2)
    import dataclasses

    from hubfleet.backends.kubernetes.fleet import DEFAULT_OPTIONS

    options = dataclasses.replace(DEFAULT_OPTIONS, catalog_git_repo=catalog_git, catalog_git_ref=catalog_git_ref,
                                  catalog_git_path=catalog_git_path,
                                  controller_image=controller_image or DEFAULT_OPTIONS.controller_image)
    loaded = load_or_exit(catalog)
    fleet = loaded.catalog.fleet.model_copy(update={"backend": "kubernetes"})
    spec = make_plan(loaded.catalog.model_copy(update={"fleet": fleet}), today(at))
    try:
        tree = render_tree(spec, gitops, options=options, material=read_material(loaded.root, spec))
    except ValueError as exc:  # includes MaterialError: a missing or oversized seed source
        err_console.print(f"[red]{exc}[/]", markup=False)
        raise typer.Exit(2) from None
    for rel, content in tree.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_yaml(content), encoding="utf-8")
    console.print(f"wrote {len(tree)} files for {len(spec.hubs)} hubs to {out}")


def kubernetes_backend(loaded):
    """The production backend from the kubeconfig and the helm binary, or exit 2 saying what is missing."""
    from hubfleet.backends.kubernetes.backend import KubernetesUnavailable, connect

    try:
        return connect(fleet=loaded.catalog.fleet.name, catalog_root=loaded.root)
    except KubernetesUnavailable as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(2) from None


def up_kubernetes(catalog: Path, loaded, at, interval: float, detach: bool, allow_mass_stop: bool) -> None:
    """`hubfleet up` for a kubernetes fleet (the controller's command in its Deployment): reconcile the cluster in
    the shared loop while holding the fleet's Lease; starts no local hub. Ctrl-C/SIGTERM release the Lease."""
    from hubfleet.backends.kubernetes.controller import controller
    from hubfleet.backends.kubernetes.lease import DEFAULT_DURATION
    from hubfleet.cli.common import print_report
    from hubfleet.backends.base import ApplyReport

    if interval * 2 >= DEFAULT_DURATION:
        err_console.print(f"[red]--interval {interval:g}: must be under {DEFAULT_DURATION / 2:g}s so the Lease is renewed in time[/]")
        raise typer.Exit(2)
    backend = kubernetes_backend(loaded)
    loop, lease = controller(catalog, backend, loaded, at, allow_mass_stop=allow_mass_stop)

    from hubfleet.backends.kubernetes.controller import write_status

    from hubfleet.backends.kubernetes.cluster import ClusterError

    def show(report) -> None:
        if loop.standing_by is None:
            try:
                write_status(backend.cluster, lease.namespace, lease.holder, report, loop.catalog_problems)
            except ClusterError as exc:  # the API server away: the next step reports it, and retries
                err_console.print(f"cannot write the controller status: {exc}", markup=False)
        for note in report.notes:
            console.print(note, markup=False, highlight=False)
        for error in report.errors:
            err_console.print(error, markup=False, highlight=False)
        if report.results:
            print_report(ApplyReport(report.results))

    say = lambda action, msg: console.print(f"{action.hub} {action.kind.value}: {msg}", highlight=False)  # noqa: E731
    console.print(f"Controller {lease.holder}: reconciling {loaded.catalog.fleet.name} every {interval:g}s "
                  f"under Lease {lease.namespace}/{lease.name}.", highlight=False)
    import signal

    from hubfleet.cli.guards import _interrupt

    import threading

    stopping = threading.Event()
    if not detach:  # a pod is stopped with SIGTERM: hand the Lease over like Ctrl-C does
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if detach:
            report = loop.step(say)
            show(report)
            lease.release()
            raise typer.Exit(0 if not report.errors and all(r.ok for r in report.results) else 1)
        lease.renew_in_background(stopping)
        loop.run(interval, progress=say, on_step=show)
    except KeyboardInterrupt:
        stopping.set()
        # Hubs keep running: they are the cluster's. Only leadership is handed over.
        lease.release()
        console.print("Controller stopped; the Lease is released. The hubs keep running in the cluster.")

