"""One archive phase of one presentation on the local backend, as its own process (the fault suite kills it):

    python tests/faults/driver.py CATALOG STATE STORAGE AT KEY

Builds the backend's ``LocalArchiving`` exactly as ``hubfleet lifecycle run`` does and runs its archive action
(freeze, archive, verify, journal, per-student re-verify, removal, stub), without starting hubs: the faults under
test are in that action, and hubs would only make each of the suite's many runs slower. Prints the outcome's
summary; exit 1 if it has problems, as the CLI does.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from hubfleet.backends.local.archiving import LocalArchiving
from hubfleet.backends.local.fleetstate import FleetPaths
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan


def main(catalog: str, state: str, storage: str, at: str, key: str) -> int:
    loaded = load_catalog(Path(catalog))
    spec = plan(loaded.catalog, dt.date.fromisoformat(at))
    pres = next(p for p in spec.retired if p.key == key)
    archiving = LocalArchiving(FleetPaths(Path(state)), Path(storage), loaded, demo_mode=True,
                               portal_url="http://127.0.0.1:1/portal/archives/", workers=2)
    archiving.say = print
    out = archiving.archive(pres)
    print(out.summary())
    return 0 if out.ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
