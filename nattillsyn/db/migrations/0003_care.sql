-- The care model shared by administration (which writes it), alerting and evaluation (which read it).
-- A site is a unit: a care home or a home-care area.

ALTER TABLE sites ADD COLUMN timezone text NOT NULL DEFAULT 'Europe/Stockholm';

-- Which units a user may see; a sysadmin sees all.
CREATE TABLE user_sites (
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    site_id  text NOT NULL REFERENCES sites (id),
    PRIMARY KEY (user_id, site_id)
);

-- Inclusion: `monitoring_active` is true only while a needs-assessment decision and a
-- consent are recorded and not withdrawn (administration maintains it with its history).
-- Monitoring runs inside the nightly window [monitor_from, monitor_to) in the site's time zone.
ALTER TABLE residents
    ADD COLUMN active          boolean NOT NULL DEFAULT true,
    ADD COLUMN monitor_from    time NOT NULL DEFAULT '21:00',
    ADD COLUMN monitor_to      time NOT NULL DEFAULT '07:00',
    ADD COLUMN risk_preset     text NOT NULL DEFAULT 'standard',
    ADD COLUMN rule_overrides  jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE UNIQUE INDEX residents_one_per_room ON residents (site_id, room_id) WHERE active;

-- Agreed tillsyn times from the care plan, each digital or physical.
CREATE TABLE tillsyn_times (
    resident_id  uuid NOT NULL REFERENCES residents (id) ON DELETE CASCADE,
    at_time      time NOT NULL,
    mode         text NOT NULL CHECK (mode IN ('digital', 'physical')),
    PRIMARY KEY (resident_id, at_time)
);

-- A pause (the resident's wish for a night, a hospital stay): no monitoring inside it.
CREATE TABLE monitoring_pauses (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    resident_id  uuid NOT NULL REFERENCES residents (id) ON DELETE CASCADE,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL CHECK (ends_at > starts_at),
    reason       text,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX monitoring_pauses_resident ON monitoring_pauses (resident_id, ends_at);

-- Whether a room is monitored at a moment: the one rule every service applies.
CREATE FUNCTION monitoring_active(p_site text, p_room text, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1
        FROM residents r JOIN sites s ON s.id = r.site_id
        WHERE r.site_id = p_site AND r.room_id = p_room AND r.active AND r.monitoring_active
          AND CASE
                WHEN r.monitor_from = r.monitor_to THEN true  -- round the clock
                WHEN r.monitor_from < r.monitor_to THEN
                    (p_at AT TIME ZONE s.timezone)::time >= r.monitor_from
                    AND (p_at AT TIME ZONE s.timezone)::time < r.monitor_to
                ELSE
                    (p_at AT TIME ZONE s.timezone)::time >= r.monitor_from
                    OR (p_at AT TIME ZONE s.timezone)::time < r.monitor_to
              END
          AND NOT EXISTS (
              SELECT 1 FROM monitoring_pauses p
              WHERE p.resident_id = r.id AND p_at >= p.starts_at AND p_at < p.ends_at)
    )
$$;

-- Practice alerts and rounds (staff training) are kept out of every statistic.
ALTER TABLE alerts
    ADD COLUMN resident_id  uuid REFERENCES residents (id),
    ADD COLUMN practice     boolean NOT NULL DEFAULT false;

-- Digital rounds: one entry per resident and agreed tillsyn time (alerting writes them).
CREATE TABLE rounds (
    id              uuid PRIMARY KEY,
    site            text NOT NULL,
    room            text NOT NULL,
    resident_id     uuid NOT NULL REFERENCES residents (id),
    scheduled_at    timestamptz NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('digital', 'physical')),
    produced_at     timestamptz NOT NULL,
    observed_state  text,
    summary         text NOT NULL,
    decision        text NOT NULL CHECK (decision IN ('digital_ok', 'physical_needed')),
    reason          text,
    confirmed_by    text,
    confirmed_at    timestamptz,
    practice        boolean NOT NULL DEFAULT false,
    UNIQUE (resident_id, scheduled_at, practice)
);
CREATE INDEX rounds_site_time ON rounds (site, scheduled_at);

-- Physical visits staff made, with why: every made and every avoided visit is countable.
CREATE TABLE visits (
    id           uuid PRIMARY KEY,
    site         text NOT NULL,
    room         text NOT NULL,
    resident_id  uuid REFERENCES residents (id),
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz CHECK (ended_at IS NULL OR ended_at >= started_at),
    by_user      text NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('round', 'alert', 'planned', 'unplanned')),
    round_id     uuid REFERENCES rounds (id),
    alert_id     uuid REFERENCES alerts (id),
    practice     boolean NOT NULL DEFAULT false
);
CREATE INDEX visits_site_time ON visits (site, started_at);
