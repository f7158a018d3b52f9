DROP TABLE audit_log;
DROP TABLE auction_results;
DROP TABLE bids;
DROP TABLE read_receipts;
DROP TABLE messages;
DROP TABLE bookings;
DROP TABLE listings;
