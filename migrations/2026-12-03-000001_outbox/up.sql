-- Notices a commit promised (auction:closed, booking:created, ...), written
-- in that commit and deleted once published to Redis: what drives them to
-- the clients whatever fails after the commit, on whichever node relays.
CREATE TABLE outbox (
    id             BIGSERIAL PRIMARY KEY,
    -- Rooms as `listing:{id}`, `user:{id}`; one emission to all of them.
    rooms          TEXT[] NOT NULL,
    event          TEXT NOT NULL,
    payload        JSONB NOT NULL,
    -- The listing version a listing event shows, if it is one.
    listing_version BIGINT,
    -- Stays the same on every try, so a connection drops a repeat.
    emission       BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A relay that took the row has it until then; NULL: free.
    leased_until   TIMESTAMPTZ,
    leased_by      TEXT
);
