-- A redelivered malformed message (the broker sends again what was stored but not yet
-- acknowledged, e.g. after a worker crash) must not be dead-lettered twice. Dead letters
-- have no natural key, so each carries sha256(topic, NUL, payload); ingest stores a
-- redelivery (MQTT DUP) only when no dead letter with that digest was kept recently.
-- Identical messages that are not redeliveries are all kept.
ALTER TABLE dead_letters ADD COLUMN digest bytea;
CREATE INDEX dead_letters_digest ON dead_letters (digest);
