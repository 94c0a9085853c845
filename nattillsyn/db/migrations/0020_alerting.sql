-- Alerting: escalation and repeat bookkeeping, silences, a replay cursor for the tablets,
-- shared-tablet enrollment and staff PINs, web-push subscriptions, change notifications.

-- What alerting needs to continue an alert's schedule after a restart.
ALTER TABLE alerts
    ADD COLUMN episode           text,
    ADD COLUMN occurrences       integer NOT NULL DEFAULT 1,
    ADD COLUMN last_seen_at      timestamptz,
    ADD COLUMN escalation_step   integer NOT NULL DEFAULT 0,
    ADD COLUMN targets           text[] NOT NULL DEFAULT '{}',
    ADD COLUMN last_notified_at  timestamptz,
    ADD COLUMN silenced          boolean NOT NULL DEFAULT false;
CREATE INDEX alerts_site_started ON alerts (site, started_at DESC);

-- Every change of an alert gets a growing number: a tablet that was disconnected
-- asks for everything after the last number it saw (replay).
ALTER TABLE alert_history ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX alert_history_seq ON alert_history (seq);

-- Silences (Alertmanager): matching alerts are recorded but neither sounded nor escalated.
CREATE TABLE alert_silences (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site        text NOT NULL REFERENCES sites (id),
    room        text,                              -- NULL: every room of the site
    kinds       text[] NOT NULL DEFAULT '{}',      -- empty: every kind
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    ended_by    text,
    practice    boolean NOT NULL DEFAULT false
);
CREATE INDEX alert_silences_site ON alert_silences (site, ends_at);

-- Digital rounds: what the entry was based on.
ALTER TABLE rounds
    ADD COLUMN observed_since  timestamptz,
    ADD COLUMN confidence      real,
    ADD COLUMN late            boolean NOT NULL DEFAULT false;

-- Shared tablets: a device enrolled to a unit by a manager; staff sign in on it with a PIN.
CREATE TABLE tablets (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id       text NOT NULL REFERENCES sites (id),
    name          text NOT NULL,
    token_hash    text NOT NULL UNIQUE,
    groups        text[] NOT NULL DEFAULT '{}',    -- escalation groups this tablet answers for
    enrolled_by   text NOT NULL,
    enrolled_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz,
    revoked_at    timestamptz
);

CREATE TABLE tablet_enrollment_codes (
    code_hash   text PRIMARY KEY,
    site_id     text NOT NULL REFERENCES sites (id),
    name        text NOT NULL,
    groups      text[] NOT NULL DEFAULT '{}',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE TABLE staff_pins (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    pin_hash    text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every PIN attempt, for rate limiting and for the access-log review.
CREATE TABLE pin_attempts (
    at         timestamptz NOT NULL DEFAULT now(),
    tablet_id  uuid NOT NULL REFERENCES tablets (id) ON DELETE CASCADE,
    user_id    uuid REFERENCES users (id) ON DELETE CASCADE,
    ok         boolean NOT NULL
);
CREATE INDEX pin_attempts_user ON pin_attempts (user_id, at);
CREATE INDEX pin_attempts_tablet ON pin_attempts (tablet_id, at);

-- Which staff sessions were opened by PIN on which tablet (quick switch, auto-lock).
CREATE TABLE tablet_signins (
    token_hash    text PRIMARY KEY,               -- = user_sessions.token_hash
    tablet_id     uuid NOT NULL REFERENCES tablets (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    signed_in_at  timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    end_reason    text
);
CREATE INDEX tablet_signins_tablet ON tablet_signins (tablet_id, signed_in_at DESC);

-- Web Push subscriptions of tablets (alerts reach a page in the background).
CREATE TABLE push_subscriptions (
    endpoint    text PRIMARY KEY,
    tablet_id   uuid REFERENCES tablets (id) ON DELETE CASCADE,
    site_id     text NOT NULL REFERENCES sites (id),
    p256dh      text NOT NULL,
    auth        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    failed_at   timestamptz
);

-- Alerting and the api learn of changes to the care model and silences at once.
CREATE FUNCTION nattillsyn_care_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nattillsyn_care', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER residents_care_changed AFTER INSERT OR UPDATE OR DELETE ON residents
    FOR EACH STATEMENT EXECUTE FUNCTION nattillsyn_care_changed();
CREATE TRIGGER pauses_care_changed AFTER INSERT OR UPDATE OR DELETE ON monitoring_pauses
    FOR EACH STATEMENT EXECUTE FUNCTION nattillsyn_care_changed();
CREATE TRIGGER tillsyn_times_care_changed AFTER INSERT OR UPDATE OR DELETE ON tillsyn_times
    FOR EACH STATEMENT EXECUTE FUNCTION nattillsyn_care_changed();
CREATE TRIGGER rooms_care_changed AFTER INSERT OR UPDATE OR DELETE ON rooms
    FOR EACH STATEMENT EXECUTE FUNCTION nattillsyn_care_changed();
CREATE TRIGGER silences_care_changed AFTER INSERT OR UPDATE OR DELETE ON alert_silences
    FOR EACH STATEMENT EXECUTE FUNCTION nattillsyn_care_changed();
