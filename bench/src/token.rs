//! Tokens the tool mints for itself: HS256 with the server's secret.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::error::Result;

/// Mints a token for `sub` that lives `ttl_secs`, with `role` when given
/// (`service` for the server API).
pub fn mint(secret: &str, sub: &str, role: Option<&str>, ttl_secs: u64) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = json!({ "sub": sub, "exp": now + ttl_secs });
    if let Some(role) = role {
        claims["role"] = json!(role);
    }
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
