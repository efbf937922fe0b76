"""``hubfleet render``: the Kubernetes backend's files for a catalog on a date, for review or a GitOps repo.

Thin: load, plan, read the seed material, ``render_tree``, write. Writes nothing outside ``--out``; files of hubs no longer wanted are
left alone (removing a hub is the plan/apply step's decision, not a renderer's).
"""

# No `from __future__ import annotations`: typer evaluates every command's annotations on every run (cli/common.py).

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
