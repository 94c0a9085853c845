-- Current device health beside availability: which session said online/offline and
-- when, and the last heartbeat as sent (fps, queue, monitoring, versions).
ALTER TABLE devices
    ADD COLUMN availability_session  bigint,
    ADD COLUMN availability_at       timestamptz,
    ADD COLUMN health                jsonb;

-- Every ingest batch updates the rows of the devices it saw: leave room in each page so
-- those updates stay heap-only (no index writes), the table stays small and fast.
ALTER TABLE devices SET (fillfactor = 50);
