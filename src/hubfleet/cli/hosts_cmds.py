"""``hubfleet hosts``: /etc/hosts lines for the local fleet's host names, for clients that cannot resolve them.

Browsers resolve ``*.localhost`` themselves and need none of this (see ``backends/local/hosts.py``); curl, Python
and some systems' resolvers do not.
"""

# No `from __future__ import annotations`: typer evaluates every command's annotations on every run (cli/common.py).

from pathlib import Path

import typer

from hubfleet.cli.common import AtOption, CatalogArg, load_or_exit, today


def hosts(
    catalog: Path = CatalogArg,
    at: str = AtOption,
    users: bool = typer.Option(False, "--users", help="Also a line per student's server (one per hub they are on)."),
    ip: str = typer.Option("127.0.0.1", "--ip", help="The address the names point at (the fleet's machine)."),
) -> None:
    """Print /etc/hosts lines for the portal, every hub and (with --users) every student's server host.

    Example: hubfleet hosts examples/university --users | sudo tee -a /etc/hosts
    """
    from hubfleet.backends.local.hosts import FleetHosts
    from hubfleet.backends.local.members import hub_members
    from hubfleet.plan import plan as make_plan

    loaded = load_or_exit(catalog)
    spec = make_plan(loaded.catalog, today(at))
    names = FleetHosts(loaded.catalog.fleet.domain)
    people = {h.name: sorted(set(hub_members(h, loaded)) | set(h.admins)) for h in spec.hubs} if users else None
    for line in names.hosts_lines([h.name for h in spec.hubs], people, ip=ip):
        typer.echo(line)
