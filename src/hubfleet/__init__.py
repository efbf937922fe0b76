"""hubfleet: a JupyterHub on request for every course presentation."""

__version__ = "0.1.0"
