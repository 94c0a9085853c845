-- Administration: organisation, inclusion workflow, consent, versioned changes,
-- device provisioning with MQTT credentials, login throttling, auth providers.

-- The organisation owns every unit (care home / home-care area) and all their data.
CREATE TABLE organisations (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO organisations (id, name) VALUES ('default', 'Organisation');

ALTER TABLE sites
    ADD COLUMN organisation_id  text NOT NULL DEFAULT 'default' REFERENCES organisations (id),
    ADD COLUMN kind             text NOT NULL DEFAULT 'care_home'
                                CHECK (kind IN ('care_home', 'home_care')),
    ADD COLUMN active           boolean NOT NULL DEFAULT true;

ALTER TABLE rooms ADD COLUMN active boolean NOT NULL DEFAULT true;

-- Users may come from another authentication provider (OpenID Connect later):
-- `auth_provider` names it and `external_subject` is the provider's stable id (OIDC `sub`).
ALTER TABLE users
    ADD COLUMN auth_provider     text NOT NULL DEFAULT 'password',
    ADD COLUMN external_subject  text,
    ADD COLUMN updated_at        timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX users_external ON users (auth_provider, external_subject)
    WHERE external_subject IS NOT NULL;

-- Each session carries its own CSRF token (stored hashed) and where it came from.
ALTER TABLE user_sessions
    ADD COLUMN csrf_hash   text,
    ADD COLUMN provider    text NOT NULL DEFAULT 'password',
    ADD COLUMN client      text;
CREATE INDEX user_sessions_user ON user_sessions (user_id);

-- Failed sign-ins, for throttling by user name and by client address.
CREATE TABLE login_failures (
    at        timestamptz NOT NULL DEFAULT now(),
    username  text NOT NULL,
    client    text NOT NULL
);
CREATE INDEX login_failures_username ON login_failures (username, at);
CREATE INDEX login_failures_client ON login_failures (client, at);

-- A unit's inclusion criteria (configurable checklist). Rows with site_id NULL are the
-- organisation's defaults, used by every unit that has none of its own.
CREATE TABLE inclusion_criteria (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id   text REFERENCES sites (id),
    key       text NOT NULL CHECK (key ~ '^[a-z0-9_]{1,64}$'),
    label_sv  text NOT NULL,
    label_en  text NOT NULL,
    required  boolean NOT NULL DEFAULT true,
    position  integer NOT NULL DEFAULT 0,
    active    boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX inclusion_criteria_key ON inclusion_criteria (coalesce(site_id, ''), key);
INSERT INTO inclusion_criteria (site_id, key, label_sv, label_en, required, position) VALUES
    (NULL, 'sleeps_alone', 'Sover ensam i rummet', 'Sleeps alone in the room', true, 1),
    (NULL, 'no_turning_at_night', 'Behöver inte vändas nattetid', 'No need for turning at night', true, 2),
    (NULL, 'cognitive_status_assessed', 'Kognitiv status bedömd', 'Cognitive status assessed', true, 3),
    (NULL, 'informed_in_own_language', 'Informerad på sitt eget språk', 'Informed in their own language', false, 4);

-- The inclusion of one resident: the needs-assessment decision and the offer of
-- digital tillsyn (always made as the default) with the resident's answer.
CREATE TABLE inclusions (
    resident_id         uuid PRIMARY KEY REFERENCES residents (id) ON DELETE CASCADE,
    decision_reference  text,
    decision_date       date,
    decision_note       text,
    offer_default       text NOT NULL DEFAULT 'digital' CHECK (offer_default IN ('digital')),
    offered_at          timestamptz,
    offered_by          text,
    offer_answer        text NOT NULL DEFAULT 'pending'
                        CHECK (offer_answer IN ('pending', 'accepted', 'declined')),
    answered_at         timestamptz,
    physical_reason     text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inclusion_answers (
    resident_id   uuid NOT NULL REFERENCES residents (id) ON DELETE CASCADE,
    criterion     text NOT NULL,
    answer        text NOT NULL CHECK (answer IN ('yes', 'no', 'unknown')),
    note          text,
    answered_by   text NOT NULL,
    answered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resident_id, criterion)
);

-- Informed consent: who gave it, when, to what, and the cohabitants' consent.
-- Withdrawal is a new fact on the row; consents are never deleted.
CREATE TABLE consents (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    resident_id        uuid NOT NULL REFERENCES residents (id) ON DELETE CASCADE,
    given_by           text NOT NULL,
    relation           text NOT NULL
                       CHECK (relation IN ('resident', 'legal_representative', 'relative', 'other')),
    given_at           timestamptz NOT NULL,
    scope              jsonb NOT NULL,
    cohabitants        jsonb NOT NULL DEFAULT '[]'::jsonb,
    note               text,
    recorded_by        text NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    withdrawn_at       timestamptz,
    withdrawn_by       text,
    withdrawal_reason  text
);
CREATE INDEX consents_resident ON consents (resident_id, given_at DESC);

-- Every change made through administration, versioned: who, when, before and after.
-- Append-only like the access log.
CREATE TABLE change_history (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    user_id    uuid,
    username   text NOT NULL,
    role       text NOT NULL,
    entity     text NOT NULL,
    entity_id  text NOT NULL,
    site       text,
    change     text NOT NULL,
    before     jsonb,
    after      jsonb
);
CREATE INDEX change_history_entity ON change_history (entity, entity_id, id);
CREATE INDEX change_history_site ON change_history (site, at);
CREATE TRIGGER change_history_no_change BEFORE UPDATE OR DELETE ON change_history
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER change_history_no_truncate BEFORE TRUNCATE ON change_history
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE INDEX audit_log_site_at ON audit_log (site, at);

-- Devices: provisioning, claim codes, desired configuration, replacement.
ALTER TABLE devices
    ADD COLUMN status             text NOT NULL DEFAULT 'active'
                                  CHECK (status IN ('provisioned', 'active', 'retired')),
    ADD COLUMN name               text,
    ADD COLUMN claim_hash         text,
    ADD COLUMN claim_expires_at   timestamptz,
    ADD COLUMN claimed_at         timestamptz,
    ADD COLUMN provisioned_by     text,
    ADD COLUMN replaces           text,
    ADD COLUMN retired_at         timestamptz,
    ADD COLUMN settings           jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN desired_version    integer NOT NULL DEFAULT 0,
    ADD COLUMN desired_monitoring boolean,
    ADD COLUMN config_pushed_at   timestamptz;
CREATE UNIQUE INDEX devices_claim ON devices (claim_hash) WHERE claim_hash IS NOT NULL;
CREATE INDEX devices_room ON devices (site_id, room_id) WHERE status <> 'retired';

-- Which room a device watched when: replacing a device keeps the room's history whole.
CREATE TABLE device_assignments (
    site_id     text NOT NULL,
    device_id   text NOT NULL,
    room_id     text NOT NULL,
    from_at     timestamptz NOT NULL DEFAULT now(),
    to_at       timestamptz,
    PRIMARY KEY (site_id, device_id, from_at)
);

-- MQTT accounts for the broker's password and ACL files. Only the Mosquitto PBKDF2
-- hash is kept; the password is shown once, to the device that claims it.
CREATE TABLE mqtt_accounts (
    username       text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('device', 'service')),
    site_id        text,
    device_id      text,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
CREATE UNIQUE INDEX mqtt_accounts_device ON mqtt_accounts (site_id, device_id)
    WHERE kind = 'device' AND revoked_at IS NULL;
