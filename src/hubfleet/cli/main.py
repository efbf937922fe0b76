"""The hubfleet command line: thin commands over library functions."""

from __future__ import annotations

import typer

from hubfleet.cli import plugin_search

plugin_search.install()  # before typer builds its parameters' validators (plugin_search.py says why)

from hubfleet.cli import catalog_cmds, cost_cmds, enrol_cmds, hosts_cmds, k8s_cmds, local_cmds  # noqa: E402

app = typer.Typer(
    name="hubfleet",
    help="A JupyterHub on request for every course presentation, planned from a declarative catalog.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(catalog_cmds.validate)
app.command()(catalog_cmds.plan)
app.command()(catalog_cmds.schema)
app.command()(catalog_cmds.docs)
app.command()(k8s_cmds.render)
app.add_typer(catalog_cmds.topology_app, name="topology")
app.add_typer(enrol_cmds.enrol_app, name="enrol")
app.command()(local_cmds.up)
app.command()(local_cmds.apply)
app.command()(local_cmds.status)
app.command()(local_cmds.down)
app.command()(hosts_cmds.hosts)
app.command()(cost_cmds.simulate)
app.command()(cost_cmds.cost)

from hubfleet.cli import lifecycle_cmds  # noqa: E402 - the lifecycle's commands, wired last

app.add_typer(lifecycle_cmds.lifecycle_app, name="lifecycle")
app.add_typer(lifecycle_cmds.archive_app, name="archive")

from hubfleet.cli import portal_cmds  # noqa: E402

app.add_typer(portal_cmds.portal_app, name="portal")

if __name__ == "__main__":
    app()
