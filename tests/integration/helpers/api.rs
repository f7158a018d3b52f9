//! The server HTTP API as the marketplace backend calls it, and the
//! fixtures made through it (a listing, a watcher, a booking).

use serde_json::{json, Value};

use super::clients::Client;
use super::servers::TestApp;

impl TestApp {
    /// The node's Prometheus text.
    pub async fn metrics(&self) -> String {
        let mut resp = awc::Client::new()
            .get(self.http("/metrics"))
            .send()
            .await
            .unwrap();
        String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
    }

    /// The marketplace backend's token.
    pub fn service_token(&self) -> String {
        self.token_with_role("backend", "service")
    }

    /// `PUT /api/v1/listings/{id}` with `body`; returns status and JSON.
    pub async fn put_listing(&self, id: &str, body: Value) -> (u16, Value) {
        let mut resp = awc::Client::new()
            .put(self.http(&format!("/api/v1/listings/{id}")))
            .bearer_auth(self.service_token())
            .send_json(&body)
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// A public fixed-price listing of `seller`'s.
    pub async fn listing(&self, id: &str, seller: &str) {
        let (status, body) = self
            .put_listing(
                id,
                json!({"sellerId": seller, "title": "Bike", "price": 10000, "currency": "EUR"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// A connection of `user` that watches `listing` (acked).
    pub async fn watching(&self, user: &str, listing: &str) -> Client {
        let mut client = self.connect(user).await;
        let ack = client
            .emit_ack("listing:watch", json!({"listingId": listing}))
            .await;
        assert_eq!(ack["ok"], true, "{user} watches {listing}: {ack}");
        client
    }

    /// `POST /api/v1/rooms/{room}/events` with `{event, data}`.
    pub async fn room_event(&self, room: &str, event: &str, data: Value) -> (u16, Value) {
        self.api(
            "POST",
            &format!("/api/v1/rooms/{room}/events"),
            Some(json!({"event": event, "data": data})),
        )
        .await
    }

    /// A service-token request with a JSON body; returns status and JSON.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = awc::Client::new();
        let request = match method {
            "GET" => client.get(self.http(path)),
            "POST" => client.post(self.http(path)),
            "PUT" => client.put(self.http(path)),
            other => panic!("method {other}"),
        }
        .bearer_auth(self.service_token());
        let mut resp = match body {
            Some(body) => request.send_json(&body).await.unwrap(),
            None => request.send().await.unwrap(),
        };
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// A `requested` booking of `buyer` on a new listing of `seller`'s,
    /// made through `listing:reserve`; returns the booking id.
    pub async fn booking(&self, listing: &str, seller: &str, buyer: &mut Client) -> String {
        self.listing(listing, seller).await;
        let ack = buyer
            .emit_ack(
                "listing:reserve",
                json!({"listingId": listing, "idempotencyKey": "k1"}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        ack["booking"]["id"].as_str().unwrap().to_owned()
    }
}
