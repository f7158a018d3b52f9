-- Fails if a sender reused a clientMsgId across bookings meanwhile.
DROP INDEX messages_idempotency;
ALTER TABLE messages ADD CONSTRAINT messages_sender_id_client_msg_id_key UNIQUE (sender_id, client_msg_id);
