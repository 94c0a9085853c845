"""The administration's data access: one module per area, functions that take a connection
and return rows or models. No HTTP here: the route modules (`api/admin_*.py`) parse,
authorise, call these and answer (aiohttp-demos' routes/views/db split).

- `structure`: units, rooms, inclusion criteria, staff accounts
- `residents`: residents and their inclusion (decision, offer, answers, consents, schedule,
  pauses, alerting profile), inclusion status and `monitoring_active`
- `devices`: device views and health, provisioning, claim codes, retirement, claiming
- `audit`: the access log page and the export datasets
"""
