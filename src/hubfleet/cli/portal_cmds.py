"""``hubfleet portal serve``: the fleet portal as a plain HTTP server, for a fleet whose hubs run elsewhere
(the Kubernetes backend's ``_fleet/`` Deployment runs exactly this; see backends/kubernetes/portal.py).

It checks the catalog (errors with file:line, exit 2, nothing served), then becomes the portal process,
``python -m hubfleet.web.portal`` (the entry the local front door starts too): the CLI and the web layer are
separate layers (pyproject's import contract), so it hands over by ``exec`` rather than importing the app."""

# No `from __future__ import annotations`: typer evaluates every command's annotations on every run (cli/common.py).

import os
import sys
from pathlib import Path

import typer

from hubfleet.cli.common import AtOption, CatalogArg, load_or_exit, today

portal_app = typer.Typer(help="The fleet portal (sign-in for every hub, \"your courses\").", no_args_is_help=True)


@portal_app.command()
def serve(
    catalog: Path = CatalogArg,
    state: Path = typer.Option(..., "--state", help="The portal's state folder (passwords; a persistent volume)."),
    public_url: str = typer.Option(..., "--public-url", help="Where browsers reach the portal, e.g. "
                                   "https://portal.hubs.example.ac.uk (the issuer and every hub's authorize URL)."),
    secrets: Path = typer.Option(None, "--secrets", help="The portal's Secret, mounted: session_secret, "
                                 "token_secret, oidc_signing_key.json (default: generated once in STATE/portal)."),
    clients: Path = typer.Option(None, "--clients", help="Hubs' OAuth client secrets, mounted: one file per hub."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    at: str = AtOption,
    wake: bool = typer.Option(False, "--wake", help="Wake hibernated hubs on their first request (Kubernetes: "
                              "the pod's service account scales their hub and proxy Deployments back up)."),
) -> None:
    """Serve the portal over HTTP on HOST:PORT for CATALOG's hubs (planned for today, re-read every minute)."""
    load_or_exit(catalog)
    argv = [sys.executable, "-m", "hubfleet.web.portal", "--catalog", str(catalog), "--state", str(state),
            "--public-url", public_url, "--host", host, "--port", str(port)]
    for flag, value in (("--secrets", secrets), ("--clients", clients), ("--at", at and today(at).isoformat())):
        if value:
            argv += [flag, str(value)]
    if wake:
        argv.append("--wake")
    sys.stdout.flush()
    os.execv(sys.executable, argv)
