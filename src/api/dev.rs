//! `GET /dev/` and `POST /dev/token`: dev mode and its demo tokens, served
//! only in dev mode.

use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Code, Failure};
use crate::ids::{UserId, ID_RULE};
use crate::state::AppState;
use crate::time::rfc3339;

/// The longest a demo token lives.
const MAX_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRequest {
    sub: String,
    role: Option<String>,
    ttl_secs: Option<i64>,
}

/// `GET /dev/`: says that this node is in dev mode. Off dev mode the path
/// is not mounted and answers 404, which is how the web front decides
/// whether to offer the demo user switcher.
pub async fn info() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "dev": true, "token": "POST /dev/token" }))
}

/// Mints an HS256 token with the node's secret.
pub async fn token(
    app: web::Data<AppState>,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, Failure> {
    let request = body.into_inner();
    UserId::parse(&request.sub)
        .ok_or_else(|| Failure::new(Code::Unprocessable, format!("sub must be {ID_RULE}")))?;
    if let Some(role) = request.role.as_deref() {
        if !matches!(role, "buyer" | "seller" | "admin" | "service") {
            return Err(Failure::new(
                Code::Unprocessable,
                "role must be buyer, seller, admin or service",
            ));
        }
    }
    let ttl = request.ttl_secs.unwrap_or(3600);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(Failure::new(
            Code::Unprocessable,
            "ttlSecs must be 1 to 604800",
        ));
    }
    let expires_at = Utc::now() + Duration::seconds(ttl);
    let token = app
        .auth
        .mint(&request.sub, request.role.as_deref(), expires_at)
        .ok_or_else(|| Failure::new(Code::Unsupported, "no HS256 secret to sign with"))?;
    Ok(HttpResponse::Ok().json(json!({ "token": token, "expiresAt": rfc3339(expires_at) })))
}
