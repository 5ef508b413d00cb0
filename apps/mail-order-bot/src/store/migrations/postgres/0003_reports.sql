-- One row per daily summary written; `tick` (the schedule tick) makes a redelivery a no-op.
CREATE TABLE IF NOT EXISTS reports (
    id         BIGSERIAL   PRIMARY KEY,
    tick       TEXT        NOT NULL UNIQUE,
    path       TEXT        NOT NULL,
    orders     BIGINT      NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
