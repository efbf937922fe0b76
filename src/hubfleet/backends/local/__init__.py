"""Local backend: every hub is a real JupyterHub process with its own node proxy, on this machine."""
