//! One module per scenario. Each takes the shared options and its own,
//! runs, and answers a report; main prints it and writes the JSON.

pub mod auction;
pub mod chat;
pub mod churn;
pub mod drops;
pub mod fanout;
pub mod idle;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::http;
use crate::report::Report;
use crate::runner;

/// Runs the scenario; answers no report when this process is a helper
/// that reports to its parent instead (`idle --child`).
pub async fn run(name: &str, common: &Common, options: Options) -> Result<Option<Report>> {
    match name {
        "auction" => runner::run::<auction::Auction>(common, options)
            .await
            .map(Some),
        "fanout" => runner::run::<fanout::Fanout>(common, options)
            .await
            .map(Some),
        "chat" => runner::run::<chat::Chat>(common, options).await.map(Some),
        "idle" => idle::run(common, options).await,
        "churn" => runner::run::<churn::Churn>(common, options).await.map(Some),
        "drops" => runner::run::<drops::Drops>(common, options).await.map(Some),
        other => fail(format!("unknown scenario {other:?} (see --help)")),
    }
}

/// A short random id for this run, so runs against one database never
/// share users or listings.
pub fn run_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric
        .sample_string(&mut rand::rng(), 8)
        .to_lowercase()
}

/// Microseconds since the epoch on this machine's clock (events carry
/// their send time so receivers on the same machine measure latency).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Adds `more`'s counts into `counts`, kind by kind.
pub fn add_counts(counts: &mut BTreeMap<String, u64>, more: BTreeMap<String, u64>) {
    for (what, n) in more {
        *counts.entry(what).or_default() += n;
    }
}

/// What went wrong during a run, counted by kind.
#[derive(Default)]
pub struct Problems(Mutex<BTreeMap<String, u64>>);

impl Problems {
    /// Counts one more of `what`.
    pub fn note(&self, what: String) {
        if let Ok(mut problems) = self.0.lock() {
            *problems.entry(what).or_default() += 1;
        }
    }

    /// Every kind so far with its count.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Adds the first ten kinds to the report's table; answers all of them.
    pub fn report(&self, report: &mut Report) -> BTreeMap<String, u64> {
        let problems = self.counts();
        if !problems.is_empty() {
            report.section("problems (first 10 kinds)");
            for (what, n) in problems.iter().take(10) {
                let what: String = what.chars().take(160).collect();
                report.item(&format!("{n}x"), what);
            }
        }
        problems
    }
}

/// Listing `room` of a run of scenario `scenario`: `bench-<scenario>-<run>-<room>`.
pub fn room_listing(scenario: &str, run: &str, room: usize) -> String {
    format!("bench-{scenario}-{run}-{room}")
}

/// Creates the `rooms` listings of a run (`room_listing`), sold by
/// `bench-seller-<run>` and titled after the scenario.
pub async fn create_rooms(
    common: &Common,
    service: &str,
    scenario: &str,
    run: &str,
    rooms: usize,
) -> Result<()> {
    create_listings(
        common,
        service,
        &format!("bench-seller-{run}"),
        &format!("souk-bench {scenario}"),
        (0..rooms).map(|room| room_listing(scenario, run, room)),
    )
    .await
}

/// Fails unless `--rate` is above 0 (and finite).
pub fn positive_rate(rate: f64) -> Result<()> {
    if rate > 0.0 && rate.is_finite() {
        Ok(())
    } else {
        fail("--rate must be above 0")
    }
}

/// Creates public fixed-price listings `ids`, sold by `seller`, through
/// `PUT /api/v1/listings/{id}`.
pub async fn create_listings(
    common: &Common,
    service: &str,
    seller: &str,
    title: &str,
    ids: impl Iterator<Item = String>,
) -> Result<()> {
    for id in ids {
        create_listing(common, service, seller, title, &id).await?;
    }
    Ok(())
}

/// Creates public fixed-price listing `id`, sold by `seller`.
pub async fn create_listing(
    common: &Common,
    service: &str,
    seller: &str,
    title: &str,
    id: &str,
) -> Result<()> {
    let body = json!({ "sellerId": seller, "title": title, "price": 100, "currency": "EUR" });
    http::request(
        &common.target,
        "PUT",
        &format!("/api/v1/listings/{id}"),
        Some(service),
        Some(&body),
    )
    .await
    .map_err(|e| format!("create listing {id}: {e}"))?
    .ok("create a listing")?;
    Ok(())
}

/// Posts `{event, data}` to listing `id`'s room through
/// `POST /api/v1/rooms/listing:{id}/events`; a refusal is an error too.
pub async fn post_listing_event(
    common: &Common,
    service: &str,
    id: &str,
    event: &str,
    data: Value,
) -> Result<()> {
    let body = json!({ "event": event, "data": data });
    http::request(
        &common.target,
        "POST",
        &format!("/api/v1/rooms/listing:{id}/events"),
        Some(service),
        Some(&body),
    )
    .await?
    .ok("post")?;
    Ok(())
}
