//! `PUT /api/v1/listings/{id}`, `GET /api/v1/listings/{id}`.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{bad_field, path_id, ServiceCaller};
use crate::broker::Auctions;
use crate::domain::{Availability, Visibility};
use crate::error::Failure;
use crate::ids::{ListingId, UserId, ID_RULE};
use crate::protocol::events::ServerEvent;
use crate::state::AppState;
use crate::store::listings::{self, AuctionProgress, AuctionSettings, ListingInput};

/// The most an amount may be (§2).
const MAX_AMOUNT: i64 = 1_000_000_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListingBody {
    seller_id: String,
    title: String,
    price: i64,
    currency: String,
    visibility: Option<String>,
    availability: Option<String>,
    auction: Option<AuctionBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuctionBody {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    start_price: i64,
    min_increment: i64,
    reserve_price: Option<i64>,
    extend_window_secs: Option<i32>,
}

impl ListingBody {
    fn validate(self) -> Result<ListingInput, Failure> {
        let seller_id = UserId::parse(&self.seller_id)
            .ok_or_else(|| bad_field(format!("sellerId must be {ID_RULE}")))?;
        if !(1..=200).contains(&self.title.chars().count()) || self.title.trim().is_empty() {
            return Err(bad_field("title must be 1 to 200 characters, not blank"));
        }
        amount("price", self.price)?;
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad_field(
                "currency must be three capital letters (ISO 4217)",
            ));
        }
        let visibility = match self.visibility.as_deref() {
            None => Visibility::Public,
            Some(text) => text
                .parse()
                .map_err(|_| bad_field("visibility must be public or private"))?,
        };
        let availability = match self.availability.as_deref() {
            None => Availability::Available,
            Some(text) => text.parse().map_err(|_| {
                bad_field("availability must be available, reserved, sold or withdrawn")
            })?,
        };
        let auction = match self.auction {
            None => None,
            Some(a) => {
                if a.starts_at >= a.ends_at {
                    return Err(bad_field("auction.startsAt must be before auction.endsAt"));
                }
                amount("auction.startPrice", a.start_price)?;
                if !(1..=MAX_AMOUNT).contains(&a.min_increment) {
                    return Err(bad_field("auction.minIncrement must be 1 to 1000000000000"));
                }
                if let Some(reserve) = a.reserve_price {
                    amount("auction.reservePrice", reserve)?;
                }
                let window = a.extend_window_secs.unwrap_or(0);
                if !(0..=86_400).contains(&window) {
                    return Err(bad_field("auction.extendWindowSecs must be 0 to 86400"));
                }
                Some(AuctionSettings {
                    starts_at: a.starts_at,
                    ends_at: a.ends_at,
                    start_price: a.start_price,
                    min_increment: a.min_increment,
                    reserve_price: a.reserve_price,
                    extend_window_secs: window,
                })
            }
        };
        Ok(ListingInput {
            seller_id,
            title: self.title,
            price: self.price,
            currency: self.currency,
            visibility,
            availability,
            auction,
        })
    }
}

fn amount(field: &str, value: i64) -> Result<(), Failure> {
    if (0..=MAX_AMOUNT).contains(&value) {
        Ok(())
    } else {
        Err(bad_field(format!(
            "{field} must be an integer from 0 to 1000000000000"
        )))
    }
}

/// Creates (201) or updates (200) a listing and tells its watchers.
pub async fn put(
    _caller: ServiceCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ListingBody>,
) -> Result<HttpResponse, Failure> {
    let id: ListingId = path_id(&path, "listing id")?;
    let input = body.into_inner().validate()?;
    let key = id.clone();
    let upserted = app
        .db
        .run(move |conn| listings::upsert(conn, &key, &input))
        .await?;
    let was_auction = upserted.before.as_ref().is_some_and(|b| b.is_auction());
    if upserted.after.is_auction() || was_auction {
        // New settings, visibility or availability, or no auction any more:
        // the next bid rebuilds the live state from Postgres (and is refused
        // there when the listing is no longer an auction). Unchanged too, so
        // that the backend's retry of a PUT whose drop failed does it.
        app.broker.forget(&id, &[]).await?;
    }
    let now = Utc::now();
    let after = upserted.after.to_listing(&AuctionProgress::default(), now);
    if upserted.changed() {
        let version = after.version;
        // Watchers are buyers too: the broadcast never shows the reserve price.
        let public = after.without_reserve();
        let updated = ServerEvent::ListingUpdated { listing: public };
        app.fanout.emit_listing(id.clone(), updated, version);
        if let Some(before) = &upserted.before {
            if before.price != after.price {
                let price = ServerEvent::PriceChanged {
                    listing_id: id.clone(),
                    price: after.price,
                    previous_price: before.price,
                    currency: after.currency.clone(),
                    version: after.version,
                };
                app.fanout.emit_listing(id.clone(), price, version);
            }
            if before.availability != upserted.after.availability {
                let availability = ServerEvent::AvailabilityChanged {
                    listing_id: id.clone(),
                    availability: after.availability,
                };
                app.fanout.emit_listing(id.clone(), availability, version);
            }
        }
    }
    let body = json!({ "listing": after });
    // Answer once the events this request caused are published.
    app.fanout.published().await;
    Ok(match upserted.before {
        None => HttpResponse::Created().json(body),
        Some(_) => HttpResponse::Ok().json(body),
    })
}

/// The listing with its auction state, reserve price included.
pub async fn get(
    _caller: ServiceCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Failure> {
    let id: ListingId = path_id(&path, "listing id")?;
    let (row, progress) = app
        .db
        .run(move |conn| listings::get_with_progress(conn, &id))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "listing": row.to_listing(&progress, Utc::now()) })))
}
