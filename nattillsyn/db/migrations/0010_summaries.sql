-- Summaries: one mechanism for "continuous aggregate or refreshed summary table"
-- (docs/storage.md, "Summaries"). `summary_create` makes
--   * a TimescaleDB continuous aggregate (real-time, with a refresh policy) when the
--     source is a hypertable, and otherwise
--   * a refreshed summary table with the same semantics in plain SQL: materialised
--     buckets below a watermark, the rest computed from the source on the fly, changes
--     below the invalidation threshold logged by statement triggers and recomputed by
--     the next refresh whose window covers them.
-- Either way the result is a relation named `p_name` with the same columns and rows.

-- Buckets aligned as TimescaleDB's time_bucket() aligns them (origin Monday 2000-01-03 UTC).
CREATE FUNCTION summary_bucket(width interval, ts timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_bin(width, ts, timestamptz '2000-01-03 00:00:00+00');

CREATE TABLE summary_registry (
    name                  text PRIMARY KEY,
    kind                  text NOT NULL CHECK (kind IN ('table', 'continuous_aggregate')),
    source                regclass NOT NULL,
    time_column           name NOT NULL,
    bucket_width          interval NOT NULL CHECK (bucket_width > interval '0'),
    mat_table             regclass,        -- kind 'table'
    compute_fn            regprocedure,    -- kind 'table'
    -- Scheduled refreshes cover [now - start_offset, now - end_offset); NULL start: all time.
    refresh_start_offset  interval,
    refresh_end_offset    interval NOT NULL DEFAULT interval '0',
    schedule_interval     interval NOT NULL DEFAULT interval '15 minutes',
    -- NULL: nothing materialised yet (no infinities: every client can read these rows).
    threshold             timestamptz,
    watermark             timestamptz,
    last_refresh          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now()
);

-- Invalid bucket ranges [lo, hi); NULL lo: from the beginning, NULL hi: without end.
CREATE TABLE summary_invalidations (
    summary  text NOT NULL REFERENCES summary_registry (name) ON DELETE CASCADE,
    lo       timestamptz,
    hi       timestamptz,
    CHECK (lo IS NULL OR hi IS NULL OR hi > lo)
);
CREATE INDEX summary_invalidations_summary ON summary_invalidations (summary);

-- Statement-level: one min/max over the changed rows per statement, not work per row.
CREATE FUNCTION summary_invalidate() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s record;
    v_lo timestamptz;
    v_hi timestamptz;
    v_lo2 timestamptz;
    v_hi2 timestamptz;
BEGIN
    FOR s IN SELECT name, time_column, bucket_width, threshold FROM summary_registry
             WHERE source = TG_RELID AND kind = 'table' LOOP
        v_lo := NULL; v_hi := NULL; v_lo2 := NULL; v_hi2 := NULL;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            EXECUTE format('SELECT min(%1$I), max(%1$I) FROM summary_new_rows', s.time_column)
                INTO v_lo, v_hi;
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            EXECUTE format('SELECT min(%1$I), max(%1$I) FROM summary_old_rows', s.time_column)
                INTO v_lo2, v_hi2;
            v_lo := least(v_lo, v_lo2);
            v_hi := greatest(v_hi, v_hi2);
        END IF;
        -- At or above the threshold nothing is materialised yet: nothing to invalidate.
        IF v_lo IS NOT NULL AND s.threshold IS NOT NULL AND v_lo < s.threshold THEN
            INSERT INTO summary_invalidations (summary, lo, hi)
            VALUES (s.name, summary_bucket(s.bucket_width, v_lo),
                    least(summary_bucket(s.bucket_width, v_hi) + s.bucket_width, s.threshold));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- Define a summary named `p_name`.
--   p_query: a SELECT reading `FROM {source} AS <alias>` whose first column is
--            `summary_bucket(<width>, <time column>) AS bucket`, grouped by the bucket
--            and the other output columns (aggregates must be recomputable per bucket).
--   offsets: scheduled refreshes cover [now - start, now - end); keep start shorter
--            than the source's retention so aggregates outlive the raw rows.
CREATE FUNCTION summary_create(
    p_name text,
    p_source regclass,
    p_time_column name,
    p_bucket_width interval,
    p_query text,
    p_refresh_start_offset interval DEFAULT NULL,
    p_refresh_end_offset interval DEFAULT interval '1 hour',
    p_schedule_interval interval DEFAULT interval '15 minutes'
) RETURNS text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    hypertable boolean := false;
    filtered text;
    mat text := p_name || '_mat';
    fn text := p_name || '_compute';
BEGIN
    IF p_query !~* '\{source\}\s+as\s+\w+' THEN
        RAISE EXCEPTION 'summary %: the query must read FROM {source} AS <alias>', p_name;
    END IF;
    IF to_regclass('timescaledb_information.hypertables') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                 WHERE format(''%I.%I'', h.hypertable_schema, h.hypertable_name)::regclass = $1)'
            INTO hypertable USING p_source;
    END IF;

    IF hypertable THEN
        EXECUTE format(
            'CREATE MATERIALIZED VIEW %I WITH (timescaledb.continuous, '
            'timescaledb.materialized_only = false) AS %s WITH NO DATA',
            p_name,
            replace(replace(p_query, '{source}', p_source::text),
                    'summary_bucket(', 'public.time_bucket('));
        PERFORM public.add_continuous_aggregate_policy(
            p_name::regclass, start_offset => p_refresh_start_offset,
            end_offset => p_refresh_end_offset, schedule_interval => p_schedule_interval);
        INSERT INTO summary_registry (name, kind, source, time_column, bucket_width,
                                      refresh_start_offset, refresh_end_offset, schedule_interval)
        VALUES (p_name, 'continuous_aggregate', p_source, p_time_column, p_bucket_width,
                p_refresh_start_offset, p_refresh_end_offset, p_schedule_interval);
        RETURN 'continuous_aggregate';
    END IF;

    filtered := replace(p_query, '{source}', format(
        '(SELECT * FROM %s WHERE %I >= lo AND %I < hi)', p_source, p_time_column, p_time_column));
    -- The table's columns are the query's: lo and hi bound to a lateral row once.
    EXECUTE format(
        'CREATE TABLE %I AS SELECT q.* FROM (SELECT ''-infinity''::timestamptz AS lo, '
        '''-infinity''::timestamptz AS hi) p, LATERAL (%s) q WITH NO DATA', mat, filtered);
    EXECUTE format('CREATE INDEX %I ON %I (bucket)', mat || '_bucket', mat);
    EXECUTE format(
        'CREATE FUNCTION %I(lo timestamptz, hi timestamptz) RETURNS SETOF %I '
        'LANGUAGE sql STABLE SET search_path FROM CURRENT AS %L', fn, mat, filtered);
    INSERT INTO summary_registry (name, kind, source, time_column, bucket_width, mat_table,
                                  compute_fn, refresh_start_offset, refresh_end_offset,
                                  schedule_interval)
    VALUES (p_name, 'table', p_source, p_time_column, p_bucket_width, mat::regclass,
            format('%I(timestamptz, timestamptz)', fn)::regprocedure,
            p_refresh_start_offset, p_refresh_end_offset, p_schedule_interval);
    -- Everything is invalid until refreshed (as for a continuous aggregate WITH NO DATA).
    INSERT INTO summary_invalidations VALUES (p_name, NULL, NULL);
    -- Real time: materialised buckets below the watermark, the source from there on.
    EXECUTE format(
        'CREATE VIEW %I AS SELECT * FROM %I WHERE bucket < '
        '(SELECT coalesce(watermark, ''-infinity'') FROM summary_registry WHERE name = %L) '
        'UNION ALL SELECT * FROM %I((SELECT coalesce(watermark, ''-infinity'') '
        'FROM summary_registry WHERE name = %L), ''infinity'')', p_name, mat, p_name, fn, p_name);
    -- One set of triggers per source table serves all its summaries.
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = p_source
                   AND tgname = 'summary_invalidate_ins') THEN
        EXECUTE format('CREATE TRIGGER summary_invalidate_ins AFTER INSERT ON %s '
                       'REFERENCING NEW TABLE AS summary_new_rows FOR EACH STATEMENT '
                       'EXECUTE FUNCTION summary_invalidate()', p_source);
        EXECUTE format('CREATE TRIGGER summary_invalidate_upd AFTER UPDATE ON %s '
                       'REFERENCING OLD TABLE AS summary_old_rows NEW TABLE AS summary_new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION summary_invalidate()', p_source);
        EXECUTE format('CREATE TRIGGER summary_invalidate_del AFTER DELETE ON %s '
                       'REFERENCING OLD TABLE AS summary_old_rows FOR EACH STATEMENT '
                       'EXECUTE FUNCTION summary_invalidate()', p_source);
    END IF;
    RETURN 'table';
END
$$;

-- Refresh a summary of kind 'table' over the whole buckets inside [p_lo, p_hi): recompute
-- the invalid buckets there, raise the threshold and the watermark. Returns the number of
-- ranges recomputed. (A continuous aggregate is refreshed with
-- CALL refresh_continuous_aggregate(...); nattillsyn.db.summaries.refresh does either.)
CREATE FUNCTION summary_refresh(p_name text, p_lo timestamptz, p_hi timestamptz)
RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s summary_registry;
    v_lo timestamptz;
    v_hi timestamptz;
    r tstzrange;
    done tstzmultirange;
    n integer := 0;
BEGIN
    -- Row lock: refreshes of one summary run one after another.
    SELECT * INTO s FROM summary_registry WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no summary named %', p_name;
    END IF;
    IF s.kind <> 'table' THEN
        RAISE EXCEPTION 'summary % is a continuous aggregate: CALL refresh_continuous_aggregate', p_name;
    END IF;
    IF p_hi = 'infinity' THEN  -- up to the end of the newest bucket with data
        EXECUTE format('SELECT summary_bucket($1, max(%I)) + $1 FROM %s', s.time_column, s.source)
            INTO p_hi USING s.bucket_width;
        p_hi := coalesce(p_hi, '-infinity');
    END IF;
    -- Whole buckets only, like a continuous aggregate's inscribed refresh window;
    -- v_lo NULL: from the beginning.
    v_lo := CASE WHEN p_lo = '-infinity' THEN NULL
                 WHEN summary_bucket(s.bucket_width, p_lo) = p_lo THEN p_lo
                 ELSE summary_bucket(s.bucket_width, p_lo) + s.bucket_width END;
    v_hi := CASE WHEN p_hi = '-infinity' THEN NULL ELSE summary_bucket(s.bucket_width, p_hi) END;
    IF v_hi IS NOT NULL AND (v_lo IS NULL OR v_lo < v_hi) THEN
        -- Invalid ranges inside the window, merged; what lies outside stays logged.
        SELECT coalesce(range_agg(tstzrange(i.lo, i.hi) * tstzrange(v_lo, v_hi)),
                        '{}'::tstzmultirange)
        INTO done FROM summary_invalidations i
        WHERE i.summary = p_name AND tstzrange(i.lo, i.hi) && tstzrange(v_lo, v_hi);
        FOR r IN SELECT unnest(done) LOOP
            EXECUTE format('DELETE FROM %s WHERE bucket >= $1 AND bucket < $2', s.mat_table)
                USING coalesce(lower(r), '-infinity'), upper(r);
            EXECUTE format('INSERT INTO %s SELECT * FROM %s($1, $2)', s.mat_table,
                           s.compute_fn::regproc)
                USING coalesce(lower(r), '-infinity'), upper(r);
            n := n + 1;
        END LOOP;
        WITH cut AS (
            DELETE FROM summary_invalidations i
            WHERE i.summary = p_name AND tstzrange(i.lo, i.hi) && tstzrange(v_lo, v_hi)
            RETURNING i.lo, i.hi
        )
        INSERT INTO summary_invalidations (summary, lo, hi)
        SELECT p_name, lower(piece), upper(piece)
        FROM cut, unnest(tstzmultirange(tstzrange(cut.lo, cut.hi))
                         - tstzmultirange(tstzrange(v_lo, v_hi))) AS piece;
        UPDATE summary_registry SET threshold = greatest(threshold, v_hi) WHERE name = p_name;
    END IF;
    EXECUTE format('SELECT max(bucket) + $1 FROM %s', s.mat_table) INTO v_lo USING s.bucket_width;
    UPDATE summary_registry
    SET watermark = greatest(watermark, v_lo), last_refresh = now()
    WHERE name = p_name;
    RETURN n;
END
$$;

-- The scheduled refresh of every summary table that is due; continuous aggregates have
-- TimescaleDB's own policy. Returns the names refreshed.
CREATE FUNCTION summary_refresh_due(p_now timestamptz DEFAULT now()) RETURNS SETOF text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s summary_registry;
BEGIN
    FOR s IN SELECT * FROM summary_registry
             WHERE kind = 'table'
               AND (last_refresh IS NULL OR last_refresh + schedule_interval <= p_now)
             ORDER BY name LOOP
        PERFORM summary_refresh(
            s.name,
            coalesce(p_now - s.refresh_start_offset, '-infinity'),
            p_now - s.refresh_end_offset);
        RETURN NEXT s.name;
    END LOOP;
END
$$;

CREATE FUNCTION summary_drop(p_name text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    s summary_registry;
BEGIN
    SELECT * INTO s FROM summary_registry WHERE name = p_name;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF s.kind = 'continuous_aggregate' THEN
        EXECUTE format('DROP MATERIALIZED VIEW %I', p_name);
    ELSE
        EXECUTE format('DROP VIEW %I', p_name);
        EXECUTE format('DROP FUNCTION %s', s.compute_fn);
        EXECUTE format('DROP TABLE %s', s.mat_table);
    END IF;
    DELETE FROM summary_registry WHERE name = p_name;
END
$$;
