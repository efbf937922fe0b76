"""The local fleet's host names: the portal, each hub and each student's server on an origin of its own.

A student's server runs code its owner wrote and can serve any page (JupyterHub's security model: users are
semi-trusted). Served from the same origin as the portal and the hubs, one link to such a page could read the
portal, take a hub's xsrf token and create API tokens for whoever opened it (issue 16, item 1). So, following
JupyterHub's guidance for untrusted content, every party gets a host of its own under ``fleet.domain``:

    http://portal.{domain}:{port}/            the portal (public list, sign-in, "your courses", the OIDC provider)
    http://{hub}.{domain}:{port}/hub/         each hub (``JupyterHub.subdomain_host``)
    http://{user}.{hub}.{domain}:{port}/user/{user}/   each student's server (JupyterHub's own user subdomains)
    http://{domain}:{port}/                   redirects to the portal

``domain`` defaults to ``localhost``: browsers resolve ``localhost`` and every ``*.localhost`` name to the loopback
themselves (RFC 6761 §6.3), so nothing needs configuring on the machine the fleet runs on. Clients that do not
(curl, Python, some resolvers) connect to 127.0.0.1 and send the host name: ``curl --resolve``, an /etc/hosts line
per host, or a wildcard DNS name for ``fleet.domain`` (README, "Hosts").
ref: https://jupyterhub.readthedocs.io/en/stable/explanation/websecurity.html#enable-subdomains

Cookies stay host-only: the portal's have no ``Domain`` attribute, and JupyterHub's login cookie is set on the hub's
host only. JupyterHub shares one cookie with its users' hosts by design, ``jupyterhub-session-id`` (on
``{hub}.{domain}``): an identifier that lets a server's OAuth token be tied to the browser session so signing out
ends it; it authenticates nothing on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PORTAL_LABEL", "FleetHosts"]

# The portal's label under the domain; the catalog refuses a hub of this name (it would take the portal's host).
PORTAL_LABEL = "portal"


@dataclass(frozen=True)
class FleetHosts:
    """Public URLs of one local fleet. ``port`` is the front door's; ``domain`` is ``fleet.domain``."""

    domain: str = "localhost"
    port: int = 8000
    scheme: str = "http"

    def _origin(self, host: str) -> str:
        default = {"http": 80, "https": 443}.get(self.scheme)
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    @property
    def portal_host(self) -> str:
        return f"{PORTAL_LABEL}.{self.domain}"

    @property
    def portal_url(self) -> str:
        """The portal's origin, no trailing slash (``http://portal.localhost:8000``)."""
        return self._origin(self.portal_host)

    def hub_host(self, hub: str) -> str:
        return f"{hub}.{self.domain}"

    def hub_url(self, hub: str) -> str:
        """A hub's public URL with its trailing slash; also its ``JupyterHub.subdomain_host`` (without the slash)."""
        return self._origin(self.hub_host(hub)) + "/"

    def user_host(self, hub: str, user: str) -> str:
        """A student's server host, as JupyterHub names it (its default ``idna`` subdomain hook: a name that is not a
        valid DNS label, e.g. ``a.smith``, becomes a stripped name plus a hash)."""
        from jupyterhub.utils import subdomain_hook_idna  # the hub's own rule, so the two never disagree

        return subdomain_hook_idna(user, self.hub_host(hub), "user")

    def hosts_lines(
        self, hubs: list[str], users: dict[str, list[str]] | None = None, ip: str = "127.0.0.1"
    ) -> list[str]:
        """/etc/hosts lines for clients that cannot resolve ``*.{domain}``. Hosts files have no wildcards, so each
        student's server host needs its own line (``users``: ``{hub: [username, ...]}``)."""
        names = [self.domain, self.portal_host] + [self.hub_host(h) for h in hubs]
        for hub, people in (users or {}).items():
            names += [self.user_host(hub, u) for u in people]
        return [f"{ip} {name}" for name in names]
