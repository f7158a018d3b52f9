//! The authorization matrix (issue 12): every client event of the contract
//! (§5), sent by each kind of caller, about a public and a private listing
//! and a booking on it, and the answer each gets. The same table is in
//! docs/DECISIONS.md; a test checks the two are one.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::helpers::*;

/// Every client event of the contract (§5), in its order: written out, not
/// taken from `KNOWN_EVENTS`, so an event the code lacks shows in the table.
const EVENTS: [&str; 17] = [
    "listing:watch",
    "listing:unwatch",
    "listing:reserve",
    "bid:place",
    "booking:join",
    "booking:leave",
    "booking:transition",
    "message:send",
    "message:history",
    "typing:start",
    "typing:stop",
    "read:mark",
    "presence:watch",
    "presence:unwatch",
    "auth:refresh",
    "admin:watch",
    "admin:unwatch",
];

/// Who sends an event, as the table's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Has a booking on the listing (the booking the events name).
    Buyer,
    /// Sells the listing.
    Seller,
    /// Neither, and no admin.
    Stranger,
    /// An admin who is not a party to the booking.
    Admin,
    /// An admin who is the buyer of a booking on the listing.
    AdminParty,
}

const CALLERS: [Caller; 5] = [
    Caller::Buyer,
    Caller::Seller,
    Caller::Stranger,
    Caller::Admin,
    Caller::AdminParty,
];

/// The expected answers: `ok` or the error code. Kept equal to the table in
/// docs/DECISIONS.md (see `the_decisions_table_is_this_matrix`).
const MATRIX: &str = "
| event | listing | buyer | seller | stranger | admin, not a party | admin, party |
|---|---|---|---|---|---|---|
| listing:watch | public | ok | ok | ok | ok | ok |
| listing:watch | private | ok | ok | forbidden | ok | ok |
| listing:unwatch | public | ok | ok | ok | ok | ok |
| listing:unwatch | private | ok | ok | ok | ok | ok |
| listing:reserve | public | ok | forbidden | ok | ok | ok |
| listing:reserve | private | ok | forbidden | forbidden | forbidden | ok |
| bid:place | public | ok | forbidden | ok | ok | ok |
| bid:place | private | ok | forbidden | forbidden | ok | ok |
| booking:join | public | ok | ok | forbidden | ok | ok |
| booking:join | private | ok | ok | forbidden | ok | ok |
| booking:leave | public | ok | ok | ok | ok | ok |
| booking:leave | private | ok | ok | ok | ok | ok |
| booking:transition | public | ok | forbidden | forbidden | forbidden | ok |
| booking:transition | private | ok | forbidden | forbidden | forbidden | ok |
| message:send | public | ok | ok | forbidden | ok | ok |
| message:send | private | ok | ok | forbidden | ok | ok |
| message:history | public | ok | ok | forbidden | ok | ok |
| message:history | private | ok | ok | forbidden | ok | ok |
| typing:start | public | ok | ok | forbidden | ok | ok |
| typing:start | private | ok | ok | forbidden | ok | ok |
| typing:stop | public | ok | ok | ok | ok | ok |
| typing:stop | private | ok | ok | ok | ok | ok |
| read:mark | public | ok | ok | forbidden | forbidden | ok |
| read:mark | private | ok | ok | forbidden | forbidden | ok |
| presence:watch | public | ok | ok | ok | ok | ok |
| presence:watch | private | ok | ok | ok | ok | ok |
| presence:unwatch | public | ok | ok | ok | ok | ok |
| presence:unwatch | private | ok | ok | ok | ok | ok |
| auth:refresh | public | ok | ok | ok | ok | ok |
| auth:refresh | private | ok | ok | ok | ok | ok |
| admin:watch | public | forbidden | forbidden | forbidden | ok | ok |
| admin:watch | private | forbidden | forbidden | forbidden | ok | ok |
| admin:unwatch | public | ok | ok | ok | ok | ok |
| admin:unwatch | private | ok | ok | ok | ok | ok |
";

/// One cell's world, with names of its own so that cells never meet (nor
/// share a per-user rate limit): listing `{p}l` of seller `{p}s`, booking
/// `{p}k1` of buyer `{p}b` and `{p}k2` of admin `{p}a`, each with one
/// message of its buyer's.
struct Cell {
    p: String,
    private: bool,
}

impl Cell {
    fn user(&self, caller: Caller) -> String {
        let suffix = match caller {
            Caller::Buyer => "b",
            Caller::Seller => "s",
            Caller::Stranger => "e",
            Caller::Admin => "d",
            Caller::AdminParty => "a",
        };
        format!("{}{suffix}", self.p)
    }

    fn admin(caller: Caller) -> bool {
        matches!(caller, Caller::Admin | Caller::AdminParty)
    }

    /// The booking (and its message) the caller's events name: its own if
    /// it has one, else the buyer's.
    fn booking(&self, caller: Caller, n: i64) -> (String, i64) {
        match caller {
            Caller::AdminParty => (format!("{}k2", self.p), message_id(n) + 1),
            _ => (format!("{}k1", self.p), message_id(n)),
        }
    }

    fn create(&self, app: &TestApp, n: i64, auction: bool) {
        let p = &self.p;
        let visibility = if self.private { "private" } else { "public" };
        let auction_columns = if auction {
            ", auction_starts_at, auction_ends_at, auction_start_price, auction_min_increment, auction_extend_window_secs"
        } else {
            ""
        };
        let auction_values = if auction {
            ", now() - interval '1 minute', now() + interval '1 hour', 100, 10, 0"
        } else {
            ""
        };
        let (m1, m2) = (message_id(n), message_id(n) + 1);
        app.batch_sql(&format!(
            "INSERT INTO listings (id, seller_id, title, price, currency, visibility{auction_columns})
                 VALUES ('{p}l', '{p}s', 'Flat', 100, 'EUR', '{visibility}'{auction_values});
             INSERT INTO bookings (id, listing_id, buyer_id, seller_id)
                 VALUES ('{p}k1', '{p}l', '{p}b', '{p}s'), ('{p}k2', '{p}l', '{p}a', '{p}s');
             INSERT INTO messages (id, booking_id, sender_id, body, client_msg_id)
                 VALUES ({m1}, '{p}k1', '{p}b', 'hello', 'm'), ({m2}, '{p}k2', '{p}a', 'hello', 'm');"
        ));
    }

    fn payload(&self, app: &TestApp, event: &str, caller: Caller, n: i64) -> Value {
        let listing = format!("{}l", self.p);
        let (booking, message) = self.booking(caller, n);
        match event {
            "listing:watch" | "listing:unwatch" => json!({"listingId": listing}),
            "listing:reserve" => json!({"listingId": listing, "idempotencyKey": "k"}),
            "bid:place" => json!({"listingId": listing, "amount": 100}),
            "booking:transition" => json!({"bookingId": booking, "to": "cancelled"}),
            "message:send" => json!({"bookingId": booking, "body": "hi", "clientMsgId": "c"}),
            "read:mark" => json!({"bookingId": booking, "messageId": message.to_string()}),
            "presence:watch" | "presence:unwatch" => json!({"userIds": [self.user(Caller::Buyer)]}),
            "auth:refresh" => json!({"token": token(app, &self.user(caller), caller)}),
            "admin:watch" | "admin:unwatch" => json!({}),
            _ => json!({"bookingId": booking}),
        }
    }
}

/// Message ids of their own, far above what the sequence hands out.
fn message_id(n: i64) -> i64 {
    1_000_000 + 2 * n
}

fn token(app: &TestApp, user: &str, caller: Caller) -> String {
    if Cell::admin(caller) {
        app.token_with_role(user, "admin")
    } else {
        app.token(user)
    }
}

/// The answer as the table shows it.
fn answer(ack: &Value) -> String {
    if ack["ok"] == true {
        "ok".to_owned()
    } else {
        ack["error"]["code"].as_str().unwrap_or("?").to_owned()
    }
}

/// The rows of a markdown table, each a list of trimmed cells, without the
/// separator row.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('|') && !line.starts_with("|-") && !line.starts_with("| -"))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

fn header() -> String {
    "| event | listing | buyer | seller | stranger | admin, not a party | admin, party |\n\
     |---|---|---|---|---|---|---|\n"
        .to_owned()
}

#[actix_web::test]
async fn every_event_answers_each_caller_as_the_matrix_says() {
    let app = TestApp::spawn().await;
    let mut table = header();
    let mut n = 0;
    for event in EVENTS {
        for private in [false, true] {
            let mut cells = Vec::new();
            for caller in CALLERS {
                n += 1;
                let cell = Cell {
                    p: format!("c{n}"),
                    private,
                };
                cell.create(&app, n, event == "bid:place");
                let mut client = Client::open(&app).await;
                let reply = client
                    .connect(Some(&token(&app, &cell.user(caller), caller)))
                    .await;
                assert!(reply.starts_with("40{"), "{reply}");
                let ack = client
                    .emit_ack(event, cell.payload(&app, event, caller, n))
                    .await;
                cells.push(answer(&ack));
            }
            let listing = if private { "private" } else { "public" };
            writeln!(table, "| {event} | {listing} | {} |", cells.join(" | ")).unwrap();
        }
    }
    assert_eq!(
        rows(&table),
        rows(MATRIX),
        "the answers differ from the matrix; they are:\n{table}"
    );
}

#[test]
fn the_decisions_table_is_this_matrix() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/DECISIONS.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Hostile clients: authorization from data"))
        .expect("the authorization section of DECISIONS.md");
    let (_, rest) = section
        .split_once("<!-- authorization matrix -->")
        .expect("the matrix's start marker");
    let (table, _) = rest
        .split_once("<!-- /authorization matrix -->")
        .expect("the matrix's end marker");
    assert_eq!(
        rows(table),
        rows(MATRIX),
        "docs/DECISIONS.md and MATRIX differ"
    );
    assert_eq!(
        rows(MATRIX).len(),
        1 + 2 * EVENTS.len(),
        "a row per event and listing"
    );
}
