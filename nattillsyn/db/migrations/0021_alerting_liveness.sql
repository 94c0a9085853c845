-- Liveness of the alerting service itself: it writes here every few seconds and the api
-- tells the tablets when it has gone quiet ("a failure of the system must raise an alarm").
CREATE TABLE service_heartbeats (
    service   text PRIMARY KEY,
    instance  text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
