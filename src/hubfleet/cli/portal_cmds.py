"""``hubfleet portal serve``: the fleet portal as a plain HTTP server, for a fleet whose hubs run elsewhere
(the Kubernetes backend's ``_fleet/`` Deployment runs exactly this; see backends/kubernetes/portal.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from hubfleet.cli.common import AtOption, CatalogArg, load_or_exit, today
from hubfleet.web.portal import serve_catalog

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
) -> None:
    """Serve the portal over HTTP on HOST:PORT for CATALOG's hubs (planned for today, re-read every minute)."""
    load_or_exit(catalog)  # a bad catalog: its errors and exit 2 before anything is served
    serve_catalog(catalog, state, public_url, secrets=secrets, clients=clients, host=host, port=port,
                  at=today(at) if at else None)
