"""JupyterLab's settings in a student's pod: the presentation's (disabled extensions, settings defaults) and the
fleet's branding, as ConfigMaps (``manifests.py``) and the read-only mounts every profile restates (``values.py``).

kubespawner replaces list traits from a profile, so anything only in the chart's hub-wide ``singleuser`` settings
would never reach a pod that has a profile: these mounts travel with each profile.
"""

from __future__ import annotations

import json

from hubfleet.backends.kubernetes import branding
from hubfleet.backends.lab_branding import lab_css, server_config
from hubfleet.catalog.naming import dns_label
from hubfleet.plan.spec import FleetSpec, HubSpec, PresentationSpec

__all__ = ["LAB_BRANDING", "LAB_CONFIG_DIR", "LAB_OVERRIDES", "LAB_PAGE_CONFIG", "lab_branding_files",
           "lab_branding_mounts", "lab_configmap_name", "lab_files", "lab_mounts"]

LAB_PAGE_CONFIG = "/etc/jupyter/labconfig/page_config.json"
# The fleet's branding in JupyterLab (backends/lab_branding.py): a Jupyter config dir of hubfleet's own, on
# JUPYTER_CONFIG_PATH as on the local backend, holding jupyter_server_config.json and custom/custom.css. Not
# /etc/jupyter itself: images ship their own jupyter_server_config there, and jupyter_server reads its
# jupyter_server_config.d only for server extensions.
LAB_CONFIG_DIR = "/etc/hubfleet/jupyter"
LAB_BRANDING = "hubfleet-lab-branding"  # the ConfigMap (and the pods' volume) with those two files
# docker-stacks images have JupyterLab in /opt/conda; pip-installed images read /usr/local. Ship both.
LAB_OVERRIDES = ("/opt/conda/share/jupyter/lab/settings/overrides.json",
                 "/usr/local/share/jupyter/lab/settings/overrides.json")


def _ro(volume: str, path: str, key: str) -> dict:
    return {"name": volume, "mountPath": path, "subPath": key, "readOnly": True}


def lab_configmap_name(p: PresentationSpec) -> str:
    return f"lab-{dns_label(p.key)}"


def lab_files(p: PresentationSpec) -> dict[str, dict]:
    """JupyterLab config as data: disabled extensions (page_config) and settings defaults (overrides)."""
    ext = p.extensions
    files = {}
    if ext.disabled:
        files["page_config.json"] = {"disabledExtensions": {e: True for e in ext.disabled}}
    if ext.settings:
        files["overrides.json"] = dict(ext.settings)
    return files


def lab_branding_files(hub: HubSpec, fleet: FleetSpec) -> dict[str, str]:
    """The fleet's branding in JupyterLab, one ConfigMap per hub (``LAB_BRANDING``; the branding is the fleet's,
    not a presentation's): custom.css with the portal's logo, and the server config that loads it."""
    config = server_config(f"{LAB_CONFIG_DIR}/custom")
    return {"custom.css": lab_css(hub.branding, branding.logo_url(hub, fleet)),
            "jupyter_server_config.json": json.dumps(config, indent=1, sort_keys=True)}


def lab_branding_mounts() -> list[dict]:
    return [_ro(LAB_BRANDING, f"{LAB_CONFIG_DIR}/custom/custom.css", "custom.css"),
            _ro(LAB_BRANDING, f"{LAB_CONFIG_DIR}/jupyter_server_config.json", "jupyter_server_config.json")]


def lab_mounts(files: dict[str, dict]) -> list[dict]:
    """Mounts of the files ``lab_files`` made (a subPath naming a missing key would mount an empty directory)."""
    out = [_ro("hubfleet-lab", LAB_PAGE_CONFIG, "page_config.json")] if "page_config.json" in files else []
    if "overrides.json" in files:
        out += [_ro("hubfleet-lab", path, "overrides.json") for path in LAB_OVERRIDES]
    return out
