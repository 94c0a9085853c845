-- Care-home gateways: what a gateway uploads after alerting on site while the centre was
-- out of reach is merged idempotently (a batch sent twice changes nothing).

-- A history row or an access-log row made on a gateway: its origin (the gateway) and the
-- gateway's own row number make it unique, so re-sending it is harmless.
ALTER TABLE alert_history
    ADD COLUMN origin      text,
    ADD COLUMN origin_seq  bigint;
CREATE UNIQUE INDEX alert_history_origin ON alert_history (origin, origin_seq)
    WHERE origin IS NOT NULL;

ALTER TABLE audit_log
    ADD COLUMN origin      text,
    ADD COLUMN origin_seq  bigint;
CREATE UNIQUE INDEX audit_log_origin ON audit_log (origin, origin_seq)
    WHERE origin IS NOT NULL;

-- Which gateway raised or last changed an alert while it alerted for its site (NULL: the centre).
ALTER TABLE alerts ADD COLUMN origin text;

-- On a gateway: which snapshot of the site's configuration is applied (the replica).
CREATE TABLE gateway_replica (
    site   text NOT NULL,
    key    text NOT NULL,
    value  text NOT NULL,
    at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, key)
);
