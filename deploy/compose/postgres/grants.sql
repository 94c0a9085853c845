-- Grafana's read-only role sees only what the operations dashboards chart: device
-- availability, alert lifecycle times and dead-letter reasons. No resident, event
-- payload, audit or user data. Re-run after every migration (idempotent).
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT (site_id, id, availability, agent_version, last_seen, last_heartbeat)
    ON devices TO grafana_reader;
GRANT SELECT (id, site, kind, priority, status, started_at, acknowledged_at, resolved_at, outcome)
    ON alerts TO grafana_reader;
GRANT SELECT (id, received_at, topic, reason, size) ON dead_letters TO grafana_reader;
ALTER ROLE grafana_reader SET statement_timeout = '10s';
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
