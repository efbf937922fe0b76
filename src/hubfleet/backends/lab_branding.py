"""The fleet's branding in JupyterLab, for both backends: one ``custom.css`` and the server setting that loads it.

``fleet.branding`` is the one source the portal, the hub pages and JupyterLab share. In JupyterLab it shows as a
bar in the primary colour, the logo in place of Jupyter's and the fleet's name at the right of the top bar, through
JupyterLab's own custom CSS (``LabApp.custom_css``) served from the server's ``static_custom_path``: a folder
hubfleet writes (locally under the hub's state dir; on Kubernetes a ConfigMap mounted read-only), never the
student's ``~/.jupyter/custom``, so a course's look cannot be edited away and reaches every student at their next
server start.
ref: https://jupyterlab.readthedocs.io/en/stable/user/custom_css.html

Both functions are pure: the local backend writes their output to files, the Kubernetes renderer puts it in a
ConfigMap.
"""

from __future__ import annotations

from hubfleet.plan.spec import BrandingSpec

__all__ = ["lab_css", "server_config"]


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal: every character but letters, digits and spaces hex-escaped, so a
    catalog's branding name cannot end the string or the rule."""
    return '"' + "".join(c if c.isalnum() and c.isascii() or c == " " else f"\\{ord(c):x} " for c in text) + '"'


def _css_url(url: str) -> str:
    """``url`` inside ``url("...")``: the same escaping, but ``/ : . -`` kept so the URL stays readable."""
    return '"' + "".join(c if c.isalnum() and c.isascii() or c in "/:.-_" else f"\\{ord(c):x} " for c in url) + '"'


def lab_css(branding: BrandingSpec, logo: str | None) -> str:
    """JupyterLab's custom.css for the fleet's branding. ``logo`` is where the page finds the logo: a file next to
    the CSS (local) or the portal's ``/branding/logo`` (Kubernetes); None keeps Jupyter's. ``primary_color`` is
    ``#rrggbb`` (catalog schema)."""
    colour = branding.primary_color
    rules = [
        "/* Written by hubfleet from fleet.yaml's branding; JupyterLab loads it with LabApp.custom_css. */",
        f":root {{ --hubfleet-primary: {colour}; }}",
        "#jp-top-panel { border-top: 3px solid var(--hubfleet-primary); }",
        f"#jp-top-panel::after {{ content: {_css_string(branding.name)}; margin-left: auto; padding: 0 12px; "
        "align-self: center; font-weight: 600; color: var(--hubfleet-primary); white-space: nowrap; }",
    ]
    if logo:
        rules.append(f"#jp-MainLogo {{ background: url({_css_url(logo)}) center / contain no-repeat; }}")
        rules.append("#jp-MainLogo > svg { visibility: hidden; }")
    return "\n".join(rules) + "\n"


def server_config(custom_dir: str) -> dict:
    """The Jupyter server settings of every student's server: serve ``custom_dir`` as ``/custom/`` and have
    JupyterLab load its CSS; and a read-only Extension Manager.

    Read-only because a course's JupyterLab extensions come from the catalog (``extensions``), while the
    default (``pypi``) manager offers students an Install button that pip-installs into the server's environment:
    refused there on the local backend (the environment is read-only in the sandbox), and on Kubernetes a change to
    the image's environment that conflicts with the course's pins and is gone at the next start. The read-only
    manager still lists what is installed, and it spares every server start the pypi manager's set-up."""
    # static_custom_path is no config trait; tornado_settings overrides the web app setting it feeds.
    return {"LabApp": {"custom_css": True, "extension_manager": "readonly"},
            "ServerApp": {"tornado_settings": {"static_custom_path": [custom_dir]}}}
