"""The fleet's branding in each hub: ``hub.templateVars`` plus two small template overrides.

JupyterHub looks up templates in ``template_paths`` first and lets a template extend the stock one as
``templates/<name>``, so the overrides only add a header colour, a logo and the login message.
# ref: https://jupyterhub.readthedocs.io/en/stable/howto/templates.html

The logo is served by the portal (``https://portal.{domain}/branding/logo``) rather than shipped into every
hub: renderers stay pure (no reading of image files) and a new logo needs no hub restart.
"""

from __future__ import annotations

from hubfleet.plan.spec import FleetSpec, HubSpec

TEMPLATE_DIR = "/usr/local/share/jupyterhub/hubfleet-templates"

PAGE = """{% extends "templates/page.html" %}
{% block stylesheet %}
{{ super() }}
<style>
  #jupyterhub-logo img { max-height: 40px; }
  .navbar, nav.navbar { border-top: 4px solid {{ hubfleet_primary_color }}; }
</style>
{% endblock %}
{% block title %}{{ hubfleet_title }}{% endblock %}
"""

LOGIN = """{% extends "templates/login.html" %}
{% block login_widget %}{% endblock %}
{% block main %}
{% if hubfleet_login_message %}
<div class="container text-center mt-3"><p class="lead">{{ hubfleet_login_message }}</p></div>
{% endif %}
{{ super() }}
{% endblock %}
"""

# Appended to the hub config: use our templates first and the portal's logo.
HUB_CONFIG = f"""# --- hubfleet branding (generated) ---
c.JupyterHub.template_paths = [{TEMPLATE_DIR!r}] + list(c.JupyterHub.get("template_paths") or [])
"""


def template_files() -> dict:
    return {
        "hubfleet-page-template": {"mountPath": f"{TEMPLATE_DIR}/page.html", "stringData": PAGE},
        "hubfleet-login-template": {"mountPath": f"{TEMPLATE_DIR}/login.html", "stringData": LOGIN},
    }


def template_vars(hub: HubSpec, fleet: FleetSpec) -> dict:
    b = hub.branding
    titles = sorted({p.title for p in hub.presentations})
    out = {
        "hubfleet_name": b.name,
        "hubfleet_title": f"{b.name}: {', '.join(titles)}" if len(titles) <= 3 else b.name,
        "hubfleet_primary_color": b.primary_color,
        "hubfleet_hub": hub.name,
        "hubfleet_portal_url": f"https://portal.{fleet.domain}/",
        "hubfleet_logo_url": logo_url(hub, fleet) or "",
    }
    if b.login_message:
        out["hubfleet_login_message"] = b.login_message
    return out


def logo_url(hub: HubSpec, fleet: FleetSpec) -> str | None:
    """Where the hub pages and JupyterLab load the fleet's logo from: the portal (None: the catalog has none)."""
    return f"https://portal.{fleet.domain}/branding/logo" if hub.branding.logo else None
