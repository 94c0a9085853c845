-- Evaluation (benefit realisation): the baseline before introduction, and summary tables the
-- reports read instead of the raw tables. docs/evaluation.md explains every column.
--
-- A night is the local date it starts on: the night of D runs from D 12:00 to D+1 12:00 in the
-- unit's time zone. Practice alerts, rounds and visits are left out everywhere.

CREATE FUNCTION eval_night(p_ts timestamptz, p_tz text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((p_ts AT TIME ZONE p_tz) - interval '12 hours')::date
$$;

-- The resident a room-level row belongs to: the active one, else the latest one.
CREATE FUNCTION eval_room_resident(p_site text, p_room text) RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT id FROM residents WHERE site_id = p_site AND room_id = p_room
    ORDER BY active DESC, created_at DESC LIMIT 1
$$;

-- Units with the night range [p_from, p_to] as a time range in their own time zone.
CREATE FUNCTION eval_units(p_sites text[], p_from date, p_to date)
RETURNS TABLE (site text, tz text, lo timestamptz, hi timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT s.id, s.timezone,
           (p_from + time '12:00') AT TIME ZONE s.timezone,
           ((p_to + 1) + time '12:00') AT TIME ZONE s.timezone
    FROM sites s WHERE p_sites IS NULL OR s.id = ANY (p_sites)
$$;

-- The scheduled monitoring window of a resident on night D (round the clock: the whole night),
-- cut to the night (noon to noon) so that every second belongs to one night.
CREATE FUNCTION eval_window(p_night date, p_from time, p_to time, p_tz text,
                            OUT ws timestamptz, OUT we timestamptz)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT greatest(w.s, (p_night + time '12:00') AT TIME ZONE p_tz),
           least(w.e, ((p_night + 1) + time '12:00') AT TIME ZONE p_tz)
    FROM (SELECT CASE WHEN p_from = p_to THEN (p_night + time '12:00') AT TIME ZONE p_tz
                      ELSE (CASE WHEN p_from >= time '12:00' THEN p_night ELSE p_night + 1 END
                            + p_from) AT TIME ZONE p_tz END AS s,
                 CASE WHEN p_from = p_to THEN ((p_night + 1) + time '12:00') AT TIME ZONE p_tz
                      ELSE (CASE WHEN p_from >= time '12:00' THEN p_night ELSE p_night + 1 END
                            + p_from
                            + CASE WHEN p_to > p_from THEN p_to - p_from
                                   ELSE p_to - p_from + interval '24 hours' END)
                           AT TIME ZONE p_tz END AS e) w
$$;

---------------------------------------------------------------------------------------------
-- Baseline: night visits before digital tillsyn, imported from the unit's own records.
CREATE TABLE baseline_imports (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site         text NOT NULL REFERENCES sites (id),
    imported_at  timestamptz NOT NULL DEFAULT now(),
    imported_by  text NOT NULL,
    source       text,
    rows         integer NOT NULL
);

CREATE TABLE baseline_nights (
    site              text NOT NULL REFERENCES sites (id),
    resident_ref      text NOT NULL,  -- the unit's pseudonymous code, never a name
    night             date NOT NULL,
    planned_visits    integer NOT NULL CHECK (planned_visits >= 0),
    unplanned_visits  integer NOT NULL CHECK (unplanned_visits >= 0),
    minutes           real CHECK (minutes IS NULL OR minutes >= 0),
    import_id         uuid NOT NULL REFERENCES baseline_imports (id),
    PRIMARY KEY (site, resident_ref, night)
);

---------------------------------------------------------------------------------------------
-- Indexes the evaluation reads by (additive, on other areas' tables).
CREATE INDEX IF NOT EXISTS eval_alerts_site_started ON alerts (site, started_at);
CREATE INDEX IF NOT EXISTS eval_visits_alert ON visits (alert_id) WHERE alert_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS eval_heartbeats_room_ts ON heartbeats (site, room, ts);

---------------------------------------------------------------------------------------------
-- Summary tables (refreshed by eval_refresh; same columns as the eval_compute_* functions).

-- One row per resident and night with anything to count.
CREATE TABLE eval_resident_nights (
    site              text NOT NULL,
    night             date NOT NULL,
    resident_id       uuid NOT NULL,
    room              text,
    rounds            integer NOT NULL,  -- agreed tillsyn times with a round entry
    rounds_digital    integer NOT NULL,  -- of which agreed as digital in the care plan
    digital_ok        integer NOT NULL,  -- physical visit avoided
    physical_needed   integer NOT NULL,
    visits            integer NOT NULL,  -- physical visits made, any reason
    visits_round      integer NOT NULL,
    visits_alert      integer NOT NULL,
    visits_planned    integer NOT NULL,
    visits_unplanned  integer NOT NULL,
    visits_timed      integer NOT NULL,  -- visits with an end time
    visit_minutes     double precision NOT NULL,  -- summed over timed visits
    alerts            integer NOT NULL,
    scheduled_s       double precision NOT NULL,  -- scheduled monitoring time
    paused_s          double precision NOT NULL,  -- of it paused
    covered_s         double precision NOT NULL,  -- of the rest, with a healthy device
    PRIMARY KEY (site, night, resident_id)
);

-- One row per check: a physical round/planned visit or a digital check (round digital_ok).
-- `activity_after_s`: seconds from the check to the first activity onset, if within 2 h.
CREATE TABLE eval_checks (
    kind              text NOT NULL CHECK (kind IN ('physical', 'digital')),
    source_id         uuid NOT NULL,
    site              text NOT NULL,
    night             date NOT NULL,
    resident_id       uuid NOT NULL,
    at                timestamptz NOT NULL,
    at_rest           boolean,  -- last state (within 12 h) in bed or no motion; NULL: none known
    activity_after_s  double precision,
    PRIMARY KEY (kind, source_id)
);
CREATE INDEX eval_checks_site_night ON eval_checks (site, night);

-- One row per alert with its times in seconds from the start.
CREATE TABLE eval_alert_facts (
    alert_id     uuid PRIMARY KEY,
    site         text NOT NULL,
    night        date NOT NULL,
    resident_id  uuid,
    kind         text NOT NULL,
    priority     text NOT NULL,
    outcome      text,
    ack_s        double precision,
    response_s   double precision,  -- until staff were in the room (first visit for the alert)
    resolve_s    double precision
);
CREATE INDEX eval_alert_facts_site_night ON eval_alert_facts (site, night);

-- Nights whose summary must be recomputed (filled by triggers on the care tables).
CREATE TABLE eval_dirty (
    site   text NOT NULL,
    night  date NOT NULL,
    PRIMARY KEY (site, night)
);

CREATE TABLE eval_refresh_state (
    one              boolean PRIMARY KEY DEFAULT true CHECK (one),
    refreshed_at     timestamptz,
    telemetry_until  timestamptz  -- telemetry up to here is in the summaries (less the lookback)
);
INSERT INTO eval_refresh_state DEFAULT VALUES;

---------------------------------------------------------------------------------------------
-- Telemetry: which 5-minute buckets had a healthy device (a heartbeat while monitoring).
-- TimescaleDB: a continuous aggregate (real time, so it always equals the raw result); its
-- policy covers the last 7 days, shorter than heartbeat retention; a backfill is materialised
-- explicitly (evaluation.store.materialise_telemetry).
-- Plain PostgreSQL: the buckets are computed from the raw heartbeats. Same buckets either way
-- (aligned as time_bucket aligns them); `p_raw` forces the raw path (benchmark, tests).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE $v$
            CREATE MATERIALIZED VIEW eval_heartbeat_5m
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT site, room, public.time_bucket(interval '5 minutes', ts) AS bucket,
                   count(*) AS beats
            FROM heartbeats
            WHERE coalesce((payload ->> 'monitoring')::boolean, true)
            GROUP BY site, room, public.time_bucket(interval '5 minutes', ts)
            WITH NO DATA $v$;
        CREATE INDEX ON eval_heartbeat_5m (site, room, bucket);  -- lives in _timescaledb_internal: no name
        PERFORM public.add_continuous_aggregate_policy('eval_heartbeat_5m',
            start_offset => interval '7 days', end_offset => interval '10 minutes',
            schedule_interval => interval '10 minutes');
        EXECUTE $f$
            CREATE FUNCTION eval_healthy_buckets(p_site text, p_lo timestamptz, p_hi timestamptz,
                                                 p_raw boolean)
            RETURNS TABLE (site text, room text, bucket timestamptz)
            LANGUAGE sql STABLE AS $b$
                SELECT b.site, b.room, b.bucket FROM eval_heartbeat_5m b
                WHERE NOT p_raw AND b.site = p_site AND b.bucket >= p_lo AND b.bucket < p_hi
                UNION ALL
                SELECT DISTINCT h.site, h.room,
                       date_bin(interval '5 minutes', h.ts, timestamptz '2000-01-03 00:00+00')
                FROM heartbeats h
                WHERE p_raw AND h.site = p_site AND h.ts >= p_lo AND h.ts < p_hi
                  AND coalesce((h.payload ->> 'monitoring')::boolean, true)
            $b$ $f$;
    ELSE
        CREATE FUNCTION eval_healthy_buckets(p_site text, p_lo timestamptz, p_hi timestamptz,
                                             p_raw boolean)
        RETURNS TABLE (site text, room text, bucket timestamptz)
        LANGUAGE sql STABLE AS $b$
            SELECT DISTINCT h.site, h.room,
                   date_bin(interval '5 minutes', h.ts, timestamptz '2000-01-03 00:00+00')
            FROM heartbeats h
            WHERE h.site = p_site AND h.ts >= p_lo AND h.ts < p_hi
              AND coalesce((h.payload ->> 'monitoring')::boolean, true)
        $b$;
    END IF;
END
$$;

---------------------------------------------------------------------------------------------
-- The computations, from the raw tables. The refresh stores their rows; the benchmark times
-- the same functions against the summary tables.

-- States that count as the resident becoming active (getting up, leaving, falling).
CREATE FUNCTION eval_active_state(p_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_state IN ('out_of_bed', 'in_chair', 'in_bathroom', 'left_room', 'on_floor')
$$;

CREATE FUNCTION eval_compute_resident_nights(p_sites text[], p_from date, p_to date,
                                             p_raw boolean DEFAULT false)
RETURNS SETOF eval_resident_nights LANGUAGE sql STABLE AS $$
WITH u AS (SELECT * FROM eval_units(p_sites, p_from, p_to)),
rnd AS (
    SELECT r.site, eval_night(r.scheduled_at, u.tz) AS night, r.resident_id,
           count(*) AS rounds,
           count(*) FILTER (WHERE r.mode = 'digital') AS rounds_digital,
           count(*) FILTER (WHERE r.decision = 'digital_ok') AS digital_ok,
           count(*) FILTER (WHERE r.decision = 'physical_needed') AS physical_needed
    FROM u JOIN rounds r ON r.site = u.site AND r.scheduled_at >= u.lo AND r.scheduled_at < u.hi
    WHERE NOT r.practice
    GROUP BY 1, 2, 3),
vis AS (
    SELECT v.site, eval_night(v.started_at, u.tz) AS night,
           coalesce(v.resident_id, eval_room_resident(v.site, v.room)) AS resident_id,
           count(*) AS visits,
           count(*) FILTER (WHERE v.reason = 'round') AS visits_round,
           count(*) FILTER (WHERE v.reason = 'alert') AS visits_alert,
           count(*) FILTER (WHERE v.reason = 'planned') AS visits_planned,
           count(*) FILTER (WHERE v.reason = 'unplanned') AS visits_unplanned,
           count(v.ended_at) AS visits_timed,
           coalesce(sum(extract(epoch FROM v.ended_at - v.started_at)) / 60.0, 0) AS visit_minutes
    FROM u JOIN visits v ON v.site = u.site AND v.started_at >= u.lo AND v.started_at < u.hi
    WHERE NOT v.practice
    GROUP BY 1, 2, 3),
alr AS (
    SELECT a.site, eval_night(a.started_at, u.tz) AS night,
           coalesce(a.resident_id, eval_room_resident(a.site, a.room)) AS resident_id,
           count(*) AS alerts
    FROM u JOIN alerts a ON a.site = u.site AND a.started_at >= u.lo AND a.started_at < u.hi
    WHERE NOT a.practice
    GROUP BY 1, 2, 3),
pau AS (
    SELECT DISTINCT res.site_id AS site, n::date AS night, p.resident_id
    FROM monitoring_pauses p
    JOIN residents res ON res.id = p.resident_id
    JOIN u ON u.site = res.site_id AND p.starts_at < u.hi AND p.ends_at > u.lo
    CROSS JOIN LATERAL generate_series(
        greatest(eval_night(p.starts_at, u.tz), p_from),
        least(eval_night(p.ends_at - interval '1 microsecond', u.tz), p_to),
        interval '1 day') AS n),
keys AS (
    SELECT site, night, resident_id FROM rnd
    UNION SELECT site, night, resident_id FROM vis WHERE resident_id IS NOT NULL
    UNION SELECT site, night, resident_id FROM alr WHERE resident_id IS NOT NULL
    UNION SELECT site, night, resident_id FROM pau),
win AS (
    SELECT k.site, k.night, k.resident_id, res.room_id AS room, w.ws, w.we
    FROM keys k
    JOIN residents res ON res.id = k.resident_id
    JOIN u ON u.site = k.site
    CROSS JOIN LATERAL eval_window(k.night, res.monitor_from, res.monitor_to, u.tz) w),
-- Healthy buckets of the units' rooms in the range, each with its night (noon alignment
-- keeps every 5-minute bucket inside one night).
hb AS (
    SELECT b.site, b.room, b.bucket, eval_night(b.bucket, u.tz) AS night
    FROM u CROSS JOIN LATERAL eval_healthy_buckets(u.site, u.lo, u.hi, p_raw) b),
covered AS (
    SELECT w.site, w.night, w.resident_id,
           sum(extract(epoch FROM least(hb.bucket + interval '5 minutes', w.we)
                                  - greatest(hb.bucket, w.ws))) AS s
    FROM win w JOIN hb ON hb.site = w.site AND hb.room = w.room AND hb.night = w.night
    WHERE hb.bucket + interval '5 minutes' > w.ws AND hb.bucket < w.we
    GROUP BY 1, 2, 3),
-- Buckets that start inside a pause are not coverage (nothing is expected then).
covered_paused AS (
    SELECT w.site, w.night, w.resident_id,
           sum(extract(epoch FROM least(hb.bucket + interval '5 minutes', w.we)
                                  - greatest(hb.bucket, w.ws))) AS s
    FROM win w
    JOIN monitoring_pauses p ON p.resident_id = w.resident_id
                            AND p.starts_at < w.we AND p.ends_at > w.ws
    JOIN hb ON hb.site = w.site AND hb.room = w.room AND hb.night = w.night
           AND hb.bucket >= p.starts_at AND hb.bucket < p.ends_at
    WHERE hb.bucket + interval '5 minutes' > w.ws AND hb.bucket < w.we
    GROUP BY 1, 2, 3),
cov AS (
    SELECT win.*,
           extract(epoch FROM win.we - win.ws) AS scheduled_s,
           least(extract(epoch FROM win.we - win.ws), coalesce((
               SELECT sum(extract(epoch FROM least(p.ends_at, win.we) - greatest(p.starts_at, win.ws)))
               FROM monitoring_pauses p
               WHERE p.resident_id = win.resident_id
                 AND p.starts_at < win.we AND p.ends_at > win.ws), 0)) AS paused_s,
           greatest(0, coalesce(c.s, 0) - coalesce(cp.s, 0)) AS covered_s
    FROM win
    LEFT JOIN covered c USING (site, night, resident_id)
    LEFT JOIN covered_paused cp USING (site, night, resident_id))
SELECT c.site, c.night, c.resident_id, c.room,
       coalesce(rnd.rounds, 0)::int, coalesce(rnd.rounds_digital, 0)::int,
       coalesce(rnd.digital_ok, 0)::int, coalesce(rnd.physical_needed, 0)::int,
       coalesce(vis.visits, 0)::int, coalesce(vis.visits_round, 0)::int,
       coalesce(vis.visits_alert, 0)::int, coalesce(vis.visits_planned, 0)::int,
       coalesce(vis.visits_unplanned, 0)::int, coalesce(vis.visits_timed, 0)::int,
       coalesce(vis.visit_minutes, 0)::double precision,
       coalesce(alr.alerts, 0)::int,
       c.scheduled_s::double precision, c.paused_s::double precision,
       least(c.covered_s, c.scheduled_s - c.paused_s)::double precision
FROM cov c
LEFT JOIN rnd USING (site, night, resident_id)
LEFT JOIN vis USING (site, night, resident_id)
LEFT JOIN alr USING (site, night, resident_id)
$$;

-- Set-based on purpose: one scan of the units' room states, then window functions over
-- states and checks in time order per room. A lookup per check would be planned once per
-- check on a hypertable (no chunk exclusion) and cost ~100 ms each on TimescaleDB.
CREATE FUNCTION eval_compute_checks(p_sites text[], p_from date, p_to date)
RETURNS SETOF eval_checks LANGUAGE sql STABLE AS $$
WITH u AS (SELECT * FROM eval_units(p_sites, p_from, p_to)),
c AS (
    SELECT 'physical'::text AS kind, v.id AS source_id, v.site, eval_night(v.started_at, u.tz) AS night,
           coalesce(v.resident_id, eval_room_resident(v.site, v.room)) AS resident_id, v.room,
           v.started_at AS began, coalesce(v.ended_at, v.started_at) AS at
    FROM u JOIN visits v ON v.site = u.site AND v.started_at >= u.lo AND v.started_at < u.hi
    WHERE NOT v.practice AND v.reason IN ('round', 'planned')
    UNION ALL
    SELECT 'digital', r.id, r.site, eval_night(r.scheduled_at, u.tz), r.resident_id, r.room,
           r.produced_at, r.produced_at
    FROM u JOIN rounds r ON r.site = u.site AND r.scheduled_at >= u.lo AND r.scheduled_at < u.hi
    WHERE NOT r.practice AND r.decision = 'digital_ok'),
-- The room states around the range (checks near its edges look 12 h back and 2 h ahead).
st AS (
    SELECT s.site, s.room, s.ts, s.state, s.since
    FROM u CROSS JOIN LATERAL (
        SELECT site, room, ts, state, since FROM room_states
        WHERE site = u.site AND ts > u.lo - interval '36 hours' AND ts <= u.hi + interval '26 hours') s),
-- At rest: the last state reported at or before the check began (within 12 h).
rest_events AS (
    SELECT site, room, ts AS t, 0 AS ord, state, ts AS state_ts, NULL::uuid AS source_id,
           NULL::text AS kind
    FROM st
    UNION ALL
    SELECT site, room, began, 1, NULL, NULL, source_id, kind FROM c),
rest_runs AS (
    SELECT *, count(state_ts) OVER (PARTITION BY site, room ORDER BY t, ord
                                    ROWS UNBOUNDED PRECEDING) AS run
    FROM rest_events),
rest AS (
    SELECT kind, source_id,
           first_value(state) OVER w AS state, first_value(state_ts) OVER w AS state_ts, t
    FROM rest_runs
    WINDOW w AS (PARTITION BY site, room, run ORDER BY t, ord)),
-- Activity: the first onset (an active state's `since`) after the check, within 2 h.
onsets AS (
    SELECT DISTINCT site, room, since FROM st WHERE eval_active_state(state)),
act_events AS (
    SELECT site, room, since AS t, 1 AS ord, since AS onset, NULL::uuid AS source_id,
           NULL::text AS kind
    FROM onsets
    UNION ALL
    SELECT site, room, at, 0, NULL, source_id, kind FROM c),
act AS (
    SELECT kind, source_id, t,
           -- looking forward; at equal times the check comes first, so onsets must be later
           min(onset) OVER (PARTITION BY site, room ORDER BY t DESC, ord ASC
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS next_onset
    FROM act_events)
SELECT c.kind, c.source_id, c.site, c.night, c.resident_id, c.at,
       CASE WHEN r.state_ts > c.began - interval '12 hours'
            THEN r.state IN ('in_bed', 'no_motion') END,
       CASE WHEN a.next_onset <= c.at + interval '2 hours'
            THEN extract(epoch FROM a.next_onset - c.at)::double precision END
FROM c
JOIN rest r ON r.kind = c.kind AND r.source_id = c.source_id
JOIN act a ON a.kind = c.kind AND a.source_id = c.source_id
WHERE c.resident_id IS NOT NULL
$$;

CREATE FUNCTION eval_compute_alert_facts(p_sites text[], p_from date, p_to date)
RETURNS SETOF eval_alert_facts LANGUAGE sql STABLE AS $$
SELECT a.id, a.site, eval_night(a.started_at, u.tz),
       coalesce(a.resident_id, eval_room_resident(a.site, a.room)),
       a.kind, a.priority, a.outcome,
       extract(epoch FROM a.acknowledged_at - a.started_at)::double precision,
       extract(epoch FROM (SELECT min(v.started_at) FROM visits v
                           WHERE v.alert_id = a.id AND NOT v.practice) - a.started_at)::double precision,
       extract(epoch FROM a.resolved_at - a.started_at)::double precision
FROM eval_units(p_sites, p_from, p_to) u
JOIN alerts a ON a.site = u.site AND a.started_at >= u.lo AND a.started_at < u.hi
WHERE NOT a.practice
$$;

---------------------------------------------------------------------------------------------
-- Invalidation: a change to alerts, rounds, visits or pauses marks its night dirty.
-- Telemetry (states, heartbeats) is re-read for the lookback window on each refresh instead,
-- since hypertables take no transition-table triggers; docs/evaluation.md has the guarantee.
CREATE FUNCTION eval_mark_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rel text;
    tcol text := CASE TG_TABLE_NAME WHEN 'rounds' THEN 'scheduled_at' ELSE 'started_at' END;
BEGIN
    -- An update marks the row's old night as well as its new one.
    FOREACH rel IN ARRAY CASE TG_OP WHEN 'INSERT' THEN ARRAY['new_rows']
                                    WHEN 'DELETE' THEN ARRAY['old_rows']
                                    ELSE ARRAY['new_rows', 'old_rows'] END LOOP
        IF TG_TABLE_NAME = 'monitoring_pauses' THEN
            EXECUTE format($q$
                INSERT INTO eval_dirty (site, night)
                SELECT DISTINCT r.site_id, d::date
                FROM %I n
                JOIN residents r ON r.id = n.resident_id
                JOIN sites s ON s.id = r.site_id
                CROSS JOIN LATERAL generate_series(eval_night(n.starts_at, s.timezone),
                                                   eval_night(n.ends_at, s.timezone),
                                                   interval '1 day') d
                ON CONFLICT DO NOTHING $q$, rel);
        ELSE
            EXECUTE format($q$
                INSERT INTO eval_dirty (site, night)
                SELECT DISTINCT n.site,
                       eval_night(n.%I, coalesce(s.timezone, 'Europe/Stockholm'))
                FROM %I n LEFT JOIN sites s ON s.id = n.site
                ON CONFLICT DO NOTHING $q$, tcol, rel);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['alerts', 'rounds', 'visits', 'monitoring_pauses'] LOOP
        EXECUTE format('CREATE TRIGGER eval_dirty_ins AFTER INSERT ON %I REFERENCING NEW TABLE '
                       'AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION eval_mark_dirty()', t);
        EXECUTE format('CREATE TRIGGER eval_dirty_upd AFTER UPDATE ON %I REFERENCING OLD TABLE '
                       'AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT '
                       'EXECUTE FUNCTION eval_mark_dirty()', t);
        EXECUTE format('CREATE TRIGGER eval_dirty_del AFTER DELETE ON %I REFERENCING OLD TABLE '
                       'AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION eval_mark_dirty()', t);
    END LOOP;
END
$$;

-- Recompute one unit's nights [p_from, p_to] in all summary tables.
CREATE FUNCTION eval_refresh_range(p_site text, p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM eval_resident_nights WHERE site = p_site AND night BETWEEN p_from AND p_to;
    DELETE FROM eval_checks WHERE site = p_site AND night BETWEEN p_from AND p_to;
    DELETE FROM eval_alert_facts WHERE site = p_site AND night BETWEEN p_from AND p_to;
    INSERT INTO eval_resident_nights
        SELECT * FROM eval_compute_resident_nights(ARRAY[p_site], p_from, p_to);
    GET DIAGNOSTICS n = ROW_COUNT;
    -- A row that moved from another night (an edited time) moves here.
    INSERT INTO eval_checks SELECT * FROM eval_compute_checks(ARRAY[p_site], p_from, p_to)
    ON CONFLICT (kind, source_id) DO UPDATE SET
        site = EXCLUDED.site, night = EXCLUDED.night, resident_id = EXCLUDED.resident_id,
        at = EXCLUDED.at, at_rest = EXCLUDED.at_rest, activity_after_s = EXCLUDED.activity_after_s;
    INSERT INTO eval_alert_facts
    SELECT * FROM eval_compute_alert_facts(ARRAY[p_site], p_from, p_to)
    ON CONFLICT (alert_id) DO UPDATE SET
        site = EXCLUDED.site, night = EXCLUDED.night, resident_id = EXCLUDED.resident_id,
        kind = EXCLUDED.kind, priority = EXCLUDED.priority, outcome = EXCLUDED.outcome,
        ack_s = EXCLUDED.ack_s, response_s = EXCLUDED.response_s, resolve_s = EXCLUDED.resolve_s;
    DELETE FROM eval_dirty WHERE site = p_site AND night BETWEEN p_from AND p_to;
    RETURN n;
END
$$;

-- Bring every summary up to date: dirty nights, plus the telemetry lookback window (at most
-- every p_min_interval, so frequent reports do not recompute recent nights each time).
-- Returns the number of resident-nights recomputed.
CREATE FUNCTION eval_refresh(p_lookback interval DEFAULT interval '2 days',
                             p_min_interval interval DEFAULT interval '5 minutes')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    st eval_refresh_state;
    r record;
    total integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('nattillsyn.eval_refresh'));
    SELECT * INTO st FROM eval_refresh_state;
    IF st.telemetry_until IS NULL OR st.refreshed_at IS NULL
       OR st.refreshed_at <= started - p_min_interval THEN
        IF st.telemetry_until IS NOT NULL THEN
            INSERT INTO eval_dirty (site, night)
            SELECT s.id, d::date FROM sites s
            CROSS JOIN LATERAL generate_series(
                eval_night(st.telemetry_until - p_lookback, s.timezone),
                eval_night(started, s.timezone), interval '1 day') d
            ON CONFLICT DO NOTHING;
        END IF;
        UPDATE eval_refresh_state SET telemetry_until = started;
    END IF;
    -- Runs of consecutive dirty nights per unit, each recomputed in one pass.
    FOR r IN SELECT site, min(night) AS lo, max(night) AS hi
             FROM (SELECT site, night,
                          night - (row_number() OVER (PARTITION BY site ORDER BY night))::int AS run
                   FROM eval_dirty) d
             GROUP BY site, run ORDER BY site, lo LOOP
        total := total + eval_refresh_range(r.site, r.lo, r.hi);
    END LOOP;
    UPDATE eval_refresh_state SET refreshed_at = started;
    RETURN total;
END
$$;

-- Whatever was stored before this migration is dirty once.
INSERT INTO eval_dirty (site, night)
SELECT x.site, eval_night(x.ts, coalesce(s.timezone, 'Europe/Stockholm'))
FROM (SELECT site, started_at AS ts FROM alerts
      UNION SELECT site, scheduled_at FROM rounds
      UNION SELECT site, started_at FROM visits) x
LEFT JOIN sites s ON s.id = x.site
ON CONFLICT DO NOTHING;
