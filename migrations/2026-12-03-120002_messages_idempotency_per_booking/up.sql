-- A retried send returns the first message of the same booking: a
-- clientMsgId may be reused in another booking (contract §5).
ALTER TABLE messages DROP CONSTRAINT messages_sender_id_client_msg_id_key;
CREATE UNIQUE INDEX messages_idempotency ON messages (booking_id, sender_id, client_msg_id);
