-- Current device health beside availability: which session said online/offline and
-- when, and the last heartbeat as sent (fps, queue, monitoring, versions).
ALTER TABLE devices
    ADD COLUMN availability_session  bigint,
    ADD COLUMN availability_at       timestamptz,
    ADD COLUMN health                jsonb;
