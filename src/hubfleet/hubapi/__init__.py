"""hubapi: the JupyterHub REST client shared by the local and kubernetes backends."""

from hubfleet.hubapi.client import AsyncHubClient, HubAPIError, HubClient, ServerNotReady, fan_out

__all__ = ["AsyncHubClient", "HubAPIError", "HubClient", "ServerNotReady", "fan_out"]
