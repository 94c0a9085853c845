-- First schema: structure, telemetry, alerts, users. Tables live in the schema
-- named by NATTILLSYN_DATABASE_SCHEMA (search_path); ids are texts chosen by the site.

CREATE TABLE sites (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rooms (
    site_id     text NOT NULL REFERENCES sites (id),
    id          text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, id)
);

-- Devices are known from provisioning or from their first message.
CREATE TABLE devices (
    site_id         text NOT NULL,
    id              text NOT NULL,
    room_id         text,
    agent_version   text,
    config_version  integer NOT NULL DEFAULT 0,
    availability    text NOT NULL DEFAULT 'unknown',
    session         bigint,
    last_seq        bigint,
    last_seen       timestamptz,
    last_heartbeat  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, id)
);

CREATE TABLE residents (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id            text NOT NULL REFERENCES sites (id),
    room_id            text,
    display_name       text NOT NULL,
    pseudonym          text NOT NULL UNIQUE DEFAULT md5(random()::text),
    monitoring_active  boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (site_id, room_id) REFERENCES rooms (site_id, id)
);

-- Telemetry: one row per message, idempotent on the source message id.
CREATE TABLE events (
    ts           timestamptz NOT NULL,
    id           uuid NOT NULL,
    site         text NOT NULL,
    room         text NOT NULL,
    device       text NOT NULL,
    session      bigint NOT NULL,
    seq          bigint NOT NULL,
    event_id     uuid NOT NULL,
    type         text NOT NULL,
    phase        text NOT NULL,
    score        real NOT NULL DEFAULT 0,
    zone         text,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, ts)
);
CREATE INDEX events_room_ts ON events (site, room, ts DESC);
CREATE INDEX events_event_id ON events (event_id);

CREATE TABLE room_states (
    ts           timestamptz NOT NULL,
    id           uuid NOT NULL,
    site         text NOT NULL,
    room         text NOT NULL,
    device       text NOT NULL,
    session      bigint NOT NULL,
    seq          bigint NOT NULL,
    state        text NOT NULL,
    since        timestamptz NOT NULL,
    confidence   real NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, ts)
);
CREATE INDEX room_states_room_ts ON room_states (site, room, ts DESC);

CREATE TABLE heartbeats (
    ts           timestamptz NOT NULL,
    id           uuid NOT NULL,
    site         text NOT NULL,
    room         text NOT NULL,
    device       text NOT NULL,
    session      bigint NOT NULL,
    seq          bigint NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, ts)
);
CREATE INDEX heartbeats_device_ts ON heartbeats (site, device, ts DESC);

-- Anything that could not be stored, with why; never silently dropped.
CREATE TABLE dead_letters (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    reason       text NOT NULL,
    size         integer NOT NULL,
    payload      bytea NOT NULL
);

CREATE TABLE alerts (
    id               uuid PRIMARY KEY,
    site             text NOT NULL,
    room             text NOT NULL,
    device           text,
    kind             text NOT NULL,
    priority         text NOT NULL CHECK (priority IN ('high', 'medium', 'low', 'info')),
    status           text NOT NULL CHECK (status IN ('firing', 'acknowledged', 'resolved')),
    title            text NOT NULL,
    started_at       timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,
    outcome          text CHECK (outcome IN ('needed_help', 'false_alarm', 'not_needed')),
    source_event     uuid,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_open ON alerts (site, room) WHERE status <> 'resolved';
CREATE UNIQUE INDEX alerts_source_event ON alerts (kind, source_event) WHERE source_event IS NOT NULL;

CREATE TABLE alert_history (
    alert_id  uuid NOT NULL REFERENCES alerts (id),
    ts        timestamptz NOT NULL DEFAULT now(),
    status    text NOT NULL,
    by_user   text,
    note      text
);
CREATE INDEX alert_history_alert ON alert_history (alert_id, ts);

CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username       text NOT NULL UNIQUE,
    display_name   text NOT NULL,
    role           text NOT NULL CHECK (role IN ('night_staff', 'unit_manager', 'evaluator', 'sysadmin')),
    password_hash  text NOT NULL,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_sessions (
    token_hash  text PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Access log (loggkontroll): every read of resident data and every change.
-- Append-only: a trigger refuses UPDATE and DELETE.
CREATE TABLE audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    user_id   uuid,
    username  text NOT NULL,
    role      text NOT NULL,
    action    text NOT NULL CHECK (action IN ('read', 'change', 'login', 'logout', 'export')),
    purpose   text NOT NULL,
    what      text NOT NULL,
    site      text,
    room      text,
    detail    jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
