"""Alerting: rules, alert lifecycle and escalation, digital rounds, and the service.

Other packages use only these modules:

- `service`: `AlertingService` (also run by a care-home gateway in standby);
- `alerts_db`: alerts and their history (the only writer of `alerts`, `alert_history`);
- `rounds_db`: round entries and visits (the only writer of `rounds`, `visits`);
- `presets`: risk presets and per-resident overrides (the admin UI);
- `rules`: the pure rule evaluation (the benchmarks replay clips through it);
- `notifiers`: the VAPID keys of Web Push;
- `site_watch`: the site-level alert kinds (`GATEWAY_STORAGE`, `SITE_OFFLINE`).

The rest (`room_watch`, `paging`, `staff_actions`, `gateway_watch`, `gateway_sync`, …) are
the service's parts.
"""
