// @generated automatically by Diesel CLI.

diesel::table! {
    auction_results (listing_id) {
        listing_id -> Text,
        winner_id -> Nullable<Text>,
        amount -> Nullable<Int8>,
        reserve_met -> Bool,
        booking_id -> Nullable<Text>,
        bid_count -> Int8,
        closed_by -> Text,
        closed_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        at -> Timestamptz,
        actor_id -> Text,
        actor_role -> Text,
        action -> Text,
        subject -> Text,
        details -> Jsonb,
    }
}

diesel::table! {
    bids (id) {
        id -> Int8,
        listing_id -> Text,
        bidder_id -> Text,
        amount -> Int8,
        auction_version -> Int8,
        idempotency_key -> Nullable<Text>,
        ends_at -> Timestamptz,
        placed_at -> Timestamptz,
    }
}

diesel::table! {
    bookings (id) {
        id -> Text,
        listing_id -> Text,
        buyer_id -> Text,
        seller_id -> Text,
        status -> Text,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        seq -> Int8,
    }
}

diesel::table! {
    listings (id) {
        id -> Text,
        seller_id -> Text,
        title -> Text,
        price -> Int8,
        currency -> Text,
        visibility -> Text,
        availability -> Text,
        version -> Int8,
        auction_starts_at -> Nullable<Timestamptz>,
        auction_ends_at -> Nullable<Timestamptz>,
        auction_start_price -> Nullable<Int8>,
        auction_min_increment -> Nullable<Int8>,
        auction_reserve_price -> Nullable<Int8>,
        auction_extend_window_secs -> Nullable<Int4>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    messages (id) {
        id -> Int8,
        booking_id -> Text,
        sender_id -> Text,
        body -> Text,
        client_msg_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        rooms -> Array<Nullable<Text>>,
        event -> Text,
        payload -> Jsonb,
        listing_version -> Nullable<Int8>,
        emission -> Int8,
        created_at -> Timestamptz,
        leased_until -> Nullable<Timestamptz>,
        leased_by -> Nullable<Text>,
    }
}

diesel::table! {
    read_receipts (booking_id, user_id) {
        booking_id -> Text,
        user_id -> Text,
        last_read_message_id -> Int8,
        read_at -> Timestamptz,
    }
}

diesel::joinable!(auction_results -> bookings (booking_id));
diesel::joinable!(auction_results -> listings (listing_id));
diesel::joinable!(bids -> listings (listing_id));
diesel::joinable!(bookings -> listings (listing_id));
diesel::joinable!(messages -> bookings (booking_id));
diesel::joinable!(read_receipts -> bookings (booking_id));
diesel::joinable!(read_receipts -> messages (last_read_message_id));

diesel::allow_tables_to_appear_in_same_query!(
    auction_results,
    audit_log,
    bids,
    bookings,
    listings,
    messages,
    outbox,
    read_receipts,
);
