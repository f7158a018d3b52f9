-- The order bookings were made in, per listing: the latest booking of a
-- listing is the one that holds it, so declining or cancelling an older one
-- (after the backend made the listing available again and someone else
-- reserved it) leaves the listing as it is.
ALTER TABLE bookings ADD COLUMN seq BIGSERIAL NOT NULL;
CREATE INDEX bookings_listing_seq ON bookings (listing_id, seq);
