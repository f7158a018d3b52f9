DROP INDEX bookings_listing_seq;
ALTER TABLE bookings DROP COLUMN seq;
