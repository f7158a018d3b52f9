-- The marketplace's durable state: listings (with auction settings), bookings,
-- chat messages and read receipts, bids, auction results and the audit log.
-- Ids from the marketplace (users, listings) are text in the contract's format;
-- ids souk makes (messages, bids, audit entries) are bigserial, shown as text.

CREATE TABLE listings (
    id                 TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    seller_id          TEXT NOT NULL CHECK (seller_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    title              TEXT NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    price              BIGINT NOT NULL CHECK (price BETWEEN 0 AND 1000000000000),
    currency           TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    visibility         TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private')),
    availability       TEXT NOT NULL DEFAULT 'available'
                       CHECK (availability IN ('available', 'reserved', 'sold', 'withdrawn')),
    version            BIGINT NOT NULL DEFAULT 1,
    -- Auction settings; all NULL for a fixed-price listing.
    auction_starts_at  TIMESTAMPTZ,
    auction_ends_at    TIMESTAMPTZ,
    auction_start_price    BIGINT CHECK (auction_start_price BETWEEN 0 AND 1000000000000),
    auction_min_increment  BIGINT CHECK (auction_min_increment BETWEEN 1 AND 1000000000000),
    auction_reserve_price  BIGINT CHECK (auction_reserve_price BETWEEN 0 AND 1000000000000),
    auction_extend_window_secs INTEGER CHECK (auction_extend_window_secs BETWEEN 0 AND 86400),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((auction_starts_at IS NULL) = (auction_ends_at IS NULL)),
    CHECK (auction_starts_at IS NULL OR auction_starts_at < auction_ends_at)
);
CREATE INDEX listings_seller ON listings (seller_id);
-- Open auctions are closed by whichever node's timer finds them first.
CREATE INDEX listings_auction_end ON listings (auction_ends_at) WHERE auction_ends_at IS NOT NULL;

CREATE TABLE bookings (
    id               TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    listing_id       TEXT NOT NULL REFERENCES listings (id),
    buyer_id         TEXT NOT NULL,
    seller_id        TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'requested' CHECK (status IN
                     ('requested', 'confirmed', 'declined', 'cancelled', 'completed', 'disputed', 'resolved')),
    -- The reserver's idempotency key: the same key from the same user returns the same booking.
    idempotency_key  TEXT CHECK (char_length(idempotency_key) BETWEEN 1 AND 64),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (buyer_id <> seller_id)
);
CREATE UNIQUE INDEX bookings_idempotency ON bookings (buyer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX bookings_listing ON bookings (listing_id);
CREATE INDEX bookings_buyer ON bookings (buyer_id);
CREATE INDEX bookings_seller ON bookings (seller_id);

CREATE TABLE messages (
    id             BIGSERIAL PRIMARY KEY,
    booking_id     TEXT NOT NULL REFERENCES bookings (id),
    sender_id      TEXT NOT NULL,
    body           TEXT NOT NULL CHECK (char_length(body) BETWEEN 1 AND 4000),
    client_msg_id  TEXT NOT NULL CHECK (char_length(client_msg_id) BETWEEN 1 AND 64),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A retried send returns the first message instead of writing a second.
    UNIQUE (sender_id, client_msg_id)
);
CREATE INDEX messages_booking ON messages (booking_id, id);

CREATE TABLE read_receipts (
    booking_id       TEXT NOT NULL REFERENCES bookings (id),
    user_id          TEXT NOT NULL,
    last_read_message_id BIGINT NOT NULL REFERENCES messages (id),
    read_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (booking_id, user_id)
);

CREATE TABLE bids (
    id               BIGSERIAL PRIMARY KEY,
    listing_id       TEXT NOT NULL REFERENCES listings (id),
    bidder_id        TEXT NOT NULL,
    amount           BIGINT NOT NULL CHECK (amount BETWEEN 0 AND 1000000000000),
    -- The auction's version after this bid: strictly increasing per listing.
    auction_version  BIGINT NOT NULL,
    idempotency_key  TEXT CHECK (char_length(idempotency_key) BETWEEN 1 AND 64),
    -- The auction's end after this bid (anti-sniping may have moved it).
    ends_at          TIMESTAMPTZ NOT NULL,
    placed_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (listing_id, auction_version)
);
CREATE UNIQUE INDEX bids_idempotency ON bids (listing_id, bidder_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE auction_results (
    -- One row per listing: the guard that closes an auction exactly once.
    listing_id   TEXT PRIMARY KEY REFERENCES listings (id),
    winner_id    TEXT,
    amount       BIGINT,
    reserve_met  BOOLEAN NOT NULL,
    booking_id   TEXT REFERENCES bookings (id),
    bid_count    BIGINT NOT NULL,
    closed_by    TEXT NOT NULL,
    closed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_id    TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    details     JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_subject ON audit_log (subject, at);
