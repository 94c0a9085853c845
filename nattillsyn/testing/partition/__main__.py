"""One role of the partition inside its namespace (started by `runner.Runner`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from nattillsyn.testing.partition.centre import run_centre
from nattillsyn.testing.partition.sites import run_reference, run_site

ROLES = {"centre": run_centre, "site": run_site, "reference": run_reference}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--role", choices=sorted(ROLES), required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--rooms", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--heartbeat-s", type=float, required=True)
    p.add_argument("--upstream", help="the centre's broker (the care homes)")
    p.add_argument("--takeover-after-s", type=float)
    p.add_argument("--handback-after-s", type=float)
    p.add_argument("--site-offline-after-s", type=float)
    a = p.parse_args()
    asyncio.run(ROLES[a.role](a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
