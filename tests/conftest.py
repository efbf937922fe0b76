"""Shared test setup: tests import their fixtures from the modules beside them (hub_fixture, ldap_server)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
