"""The partition test: a care home cut off from the centre, with network namespaces.

The same scenario (nattillsyn/testing/partition/) as `python -m bench.partition` (which runs
the issue's 10-minute cut) with a short outage: centre, care home and a reference care home (Mosquitto's own bridge) in
separate network namespaces joined by veth pairs; the link is cut while rooms produce
events and falls happen. Skipped, with the reason, where namespaces are unavailable (not
root, no `ip`, no PostgreSQL or Mosquitto binaries). Everything it creates is removed, also
when it fails.
"""

from __future__ import annotations

import subprocess

import pytest

from nattillsyn.testing.partition import PartitionOptions, netns_unavailable, scenario

OUTAGE_S = 25.0


@pytest.fixture(scope="module")
def namespaces() -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"partition test needs network namespaces: {reason}")


def _our_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(("ntc", "nts", "ntr"))}


@pytest.mark.timeout(300)
async def test_partition_short_outage(namespaces) -> None:
    args = PartitionOptions(
        outage_s=OUTAGE_S,
        rooms=3,
        rate=6.0,
        heartbeat_s=5.0,
        warmup_s=3.0,
        early_fall_s=2.0,
        tail_s=2.0,
        takeover_after_s=10.0,
        handback_after_s=3.0,
        site_offline_after_s=12.0,
        cut="link",
        fall_bound_s=None,  # a benchmark measures how fast; this checks what happens
    )
    res = await scenario(args)
    # Only this run's: a concurrent run on the machine has its own meanwhile.
    assert not _our_namespaces() & set(res["namespaces"]), "namespaces left behind"
    assert res["ok"], res["failures"]
    # The fall during the outage reached the site's tablet with the link down; staff were
    # told once.
    assert res["fall_on_site_during_outage"]
    assert res["duplicates_sent_to_staff"] == 0
    outage = res["falls"]["outage"]
    assert outage["announced_new_by_centre"] == 0 and outage["announced_new"] == 1
    assert outage["central_status"] == "acknowledged"
    assert outage["central_history"][:2] == ["firing", "acknowledged"]
    # Every device message in the central database exactly once, for both care homes.
    for site in res["events"].values():
        assert site["lost"] == 0 and site["duplicated"] == 0
        assert site["stored"] == site["published"] > 0
    # The centre said the site was offline, and resolved it when it came back.
    assert [a["status"] for a in res["site_offline_alerts"]] == ["resolved"]
    # The tablet on the gateway's page was told it runs in fallback mode, and when it ended.
    assert {"fallback", "normal"} <= set(res["tablet_banner"])
    # Without the gateway (the reference) the fall waits for the link.
    assert res["reference_fall_to_site_s"] is not None
    assert not res["reference_fall_during_outage"]
