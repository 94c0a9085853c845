-- Lifecycle of telemetry (docs/storage.md): retention, compression and the hourly and
-- nightly summaries. TimescaleDB runs retention, compression and aggregate refreshes as
-- its own background jobs; plain PostgreSQL gets the same results from
-- storage_maintain(), which the ingest service runs on a schedule.

-- One row per table. Retention removes whole chunks (whole UTC days here) on both
-- backends, so both keep exactly the same rows.
CREATE TABLE storage_policies (
    table_name      text PRIMARY KEY,
    time_column     name NOT NULL,
    chunk_interval  interval NOT NULL,
    retention       interval CHECK (retention > interval '0'),      -- NULL: keep for ever
    compress_after  interval CHECK (compress_after > interval '0'), -- TimescaleDB only
    updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO storage_policies (table_name, time_column, chunk_interval, retention, compress_after)
VALUES ('events', 'ts', '1 day', '90 days', '7 days'),
       ('room_states', 'ts', '1 day', '90 days', '7 days'),
       ('heartbeats', 'ts', '1 day', '30 days', '7 days'),
       ('dead_letters', 'received_at', '1 day', '30 days', NULL);

CREATE FUNCTION storage_is_hypertable(p_table regclass) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    found boolean := false;
BEGIN
    IF to_regclass('timescaledb_information.hypertables') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
             WHERE format(''%I.%I'', h.hypertable_schema, h.hypertable_name)::regclass = $1)'
        INTO found USING p_table;
    RETURN found;
END
$$;

-- Make TimescaleDB's jobs match the policy row (no-op for plain tables).
CREATE FUNCTION storage_apply(p_table text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    p storage_policies;
    t regclass;
BEGIN
    SELECT * INTO p FROM storage_policies WHERE table_name = p_table;
    t := p_table::regclass;
    IF NOT FOUND OR NOT storage_is_hypertable(t) THEN
        RETURN;
    END IF;
    PERFORM public.remove_retention_policy(t, if_exists => true);
    IF p.retention IS NOT NULL THEN
        PERFORM public.add_retention_policy(t, drop_after => p.retention,
                                            schedule_interval => interval '1 hour');
    END IF;
    PERFORM public.remove_compression_policy(t, if_exists => true);
    IF p.compress_after IS NOT NULL THEN
        PERFORM public.add_compression_policy(t, compress_after => p.compress_after);
    END IF;
END
$$;

-- Change a table's retention and compression age (NULL: keep for ever / never compress).
CREATE FUNCTION storage_set_policy(p_table text, p_retention interval, p_compress_after interval)
RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE storage_policies
    SET retention = p_retention, compress_after = p_compress_after, updated_at = now()
    WHERE table_name = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no storage policy for table %', p_table;
    END IF;
    PERFORM storage_apply(p_table);
END
$$;

-- Retention for tables TimescaleDB does not manage: delete what lies in whole chunks
-- older than now - retention (drop_chunks' rule). Returns rows deleted per table.
CREATE FUNCTION storage_retention_run(p_now timestamptz DEFAULT now())
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    p storage_policies;
    cutoff timestamptz;
    n bigint;
BEGIN
    FOR p IN SELECT * FROM storage_policies WHERE retention IS NOT NULL ORDER BY 1 LOOP
        CONTINUE WHEN storage_is_hypertable(p.table_name::regclass);
        cutoff := date_bin(p.chunk_interval, p_now - p.retention, timestamptz '1970-01-01 00:00:00+00');
        EXECUTE format('DELETE FROM %I WHERE %I < $1', p.table_name, p.time_column) USING cutoff;
        GET DIAGNOSTICS n = ROW_COUNT;
        table_name := p.table_name;
        deleted := n;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Everything plain PostgreSQL needs on a schedule (TimescaleDB does its share itself).
CREATE FUNCTION storage_maintain(p_now timestamptz DEFAULT now()) RETURNS jsonb
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    deleted jsonb;
    refreshed jsonb;
BEGIN
    SELECT coalesce(jsonb_object_agg(r.table_name, r.deleted), '{}') INTO deleted
    FROM storage_retention_run(p_now) r;
    SELECT coalesce(jsonb_agg(n), '[]') INTO refreshed FROM summary_refresh_due(p_now) n;
    RETURN jsonb_build_object('deleted', deleted, 'refreshed', refreshed);
END
$$;

DO $$
BEGIN
    IF storage_is_hypertable('events') THEN
        -- Columnar compression per room, newest first: night views read one room's rows.
        ALTER TABLE events SET (timescaledb.compress, timescaledb.compress_segmentby = 'site, room',
                                timescaledb.compress_orderby = 'ts DESC, id');
        ALTER TABLE room_states SET (timescaledb.compress,
                                     timescaledb.compress_segmentby = 'site, room',
                                     timescaledb.compress_orderby = 'ts DESC, id');
        ALTER TABLE heartbeats SET (timescaledb.compress,
                                    timescaledb.compress_segmentby = 'site, device',
                                    timescaledb.compress_orderby = 'ts DESC, id');
        PERFORM storage_apply('events');
        PERFORM storage_apply('room_states');
        PERFORM storage_apply('heartbeats');
    END IF;
END
$$;

-- Hourly summaries (continuous aggregates on TimescaleDB). Refreshed over the last 30
-- days, which is less than any raw retention, so they outlive the raw rows.
SELECT summary_create('events_hourly', 'events', 'ts', interval '1 hour', $q$
    SELECT summary_bucket(interval '1 hour', e.ts) AS bucket, e.site, e.room, e.type,
           count(*) FILTER (WHERE e.phase = 'new') AS started,
           count(*) AS messages,
           max(e.score) AS max_score,
           min(e.ts) AS first_at,
           max(e.ts) AS last_at
    FROM {source} AS e
    GROUP BY summary_bucket(interval '1 hour', e.ts), e.site, e.room, e.type
$q$, interval '30 days', interval '1 hour', interval '15 minutes');

SELECT summary_create('room_states_hourly', 'room_states', 'ts', interval '1 hour', $q$
    SELECT summary_bucket(interval '1 hour', r.ts) AS bucket, r.site, r.room, r.state,
           count(*) AS reports,
           min(r.confidence) AS min_confidence,
           max(r.confidence) AS max_confidence,
           min(r.ts) AS first_at,
           max(r.ts) AS last_at
    FROM {source} AS r
    GROUP BY summary_bucket(interval '1 hour', r.ts), r.site, r.room, r.state
$q$, interval '30 days', interval '1 hour', interval '15 minutes');

SELECT summary_create('heartbeats_hourly', 'heartbeats', 'ts', interval '1 hour', $q$
    SELECT summary_bucket(interval '1 hour', h.ts) AS bucket, h.site, h.room, h.device,
           count(*) AS beats,
           count(*) FILTER (WHERE (h.payload ->> 'monitoring') IS DISTINCT FROM 'false')
               AS monitoring_beats,
           min(h.ts) AS first_at,
           max(h.ts) AS last_at
    FROM {source} AS h
    GROUP BY summary_bucket(interval '1 hour', h.ts), h.site, h.room, h.device
$q$, interval '30 days', interval '1 hour', interval '15 minutes');

-- Nights in the site's time zone: the night of date D runs from 12:00 on D to 12:00 on
-- D + 1, so an evening and the early morning after it are one night. Rolled up from the
-- hourly summaries (whole-hour UTC offsets, as in Sweden, roll up exactly).
CREATE FUNCTION night_of(p_ts timestamptz, p_timezone text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ((p_ts AT TIME ZONE p_timezone) - interval '12 hours')::date;

CREATE VIEW events_nightly AS
SELECT night_of(h.bucket, coalesce(s.timezone, 'Europe/Stockholm')) AS night,
       h.site, h.room, h.type,
       sum(h.started)::bigint AS started,
       sum(h.messages)::bigint AS messages,
       max(h.max_score) AS max_score,
       min(h.first_at) AS first_at,
       max(h.last_at) AS last_at
FROM events_hourly h LEFT JOIN sites s ON s.id = h.site
GROUP BY 1, 2, 3, 4;

CREATE VIEW room_states_nightly AS
SELECT night_of(h.bucket, coalesce(s.timezone, 'Europe/Stockholm')) AS night,
       h.site, h.room, h.state,
       sum(h.reports)::bigint AS reports,
       min(h.min_confidence) AS min_confidence,
       max(h.max_confidence) AS max_confidence,
       min(h.first_at) AS first_at,
       max(h.last_at) AS last_at
FROM room_states_hourly h LEFT JOIN sites s ON s.id = h.site
GROUP BY 1, 2, 3, 4;

CREATE VIEW heartbeats_nightly AS
SELECT night_of(h.bucket, coalesce(s.timezone, 'Europe/Stockholm')) AS night,
       h.site, h.room, h.device,
       sum(h.beats)::bigint AS beats,
       sum(h.monitoring_beats)::bigint AS monitoring_beats,
       min(h.first_at) AS first_at,
       max(h.last_at) AS last_at
FROM heartbeats_hourly h LEFT JOIN sites s ON s.id = h.site
GROUP BY 1, 2, 3, 4;

-- Per resident: the room's active resident (the care model keeps no room history).
CREATE VIEW events_nightly_by_resident AS
SELECT r.id AS resident_id, e.*
FROM events_nightly e
JOIN residents r ON r.site_id = e.site AND r.room_id = e.room AND r.active;
