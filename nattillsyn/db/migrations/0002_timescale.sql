-- TimescaleDB when the extension is installed: telemetry tables become hypertables.
-- Plain PostgreSQL keeps ordinary tables with the same columns and results.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM public.create_hypertable('events', 'ts', chunk_time_interval => interval '1 day', migrate_data => true);
        PERFORM public.create_hypertable('room_states', 'ts', chunk_time_interval => interval '1 day', migrate_data => true);
        PERFORM public.create_hypertable('heartbeats', 'ts', chunk_time_interval => interval '1 day', migrate_data => true);
    ELSE
        -- Time-ordered appends: BRIN keeps range scans cheap without TimescaleDB.
        CREATE INDEX IF NOT EXISTS events_ts_brin ON events USING brin (ts);
        CREATE INDEX IF NOT EXISTS room_states_ts_brin ON room_states USING brin (ts);
        CREATE INDEX IF NOT EXISTS heartbeats_ts_brin ON heartbeats USING brin (ts);
    END IF;
END
$$;
