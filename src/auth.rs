//! Tokens to identities (contract §2).

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use crate::ids::UserId;
use crate::settings::{JwtSettings, DEV_JWT_SECRET};

/// What a token's `role` claim grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Any role but `admin` and `service`: buyers and sellers alike.
    User,
    /// May join any booking room (audited) and resolve disputes.
    Admin,
    /// The marketplace backend; server API only.
    Service,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

/// Why a token was refused; `code` is the contract's word for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
}

impl AuthError {
    /// `missing_token`, `invalid_token` or `token_expired`.
    pub fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Invalid => "invalid_token",
            AuthError::Expired => "token_expired",
        }
    }
}

/// A token key that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read JWT public key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("JWT public key {0} is neither an RSA nor an EC (P-256) PEM public key")]
    Format(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// Checks tokens against the configured keys.
pub struct Authenticator {
    /// One verifier per accepted algorithm.
    verifiers: Vec<(Algorithm, DecodingKey, Validation)>,
    /// The HS256 secret, kept to mint dev tokens.
    secret: Option<String>,
}

impl Authenticator {
    /// Loads the keys of the settings; in dev mode without keys, the dev secret.
    pub fn new(settings: &JwtSettings, dev: bool) -> Result<Self, KeyError> {
        let mut verifiers = Vec::new();
        let mut secret = settings.secret.clone();
        if secret.is_none() && settings.public_key_path.is_none() && dev {
            log::warn!("dev mode: accepting tokens signed with the fixed dev secret");
            secret = Some(DEV_JWT_SECRET.to_owned());
        }
        if let Some(secret) = &secret {
            let key = DecodingKey::from_secret(secret.as_bytes());
            verifiers.push((
                Algorithm::HS256,
                key,
                validation(Algorithm::HS256, settings),
            ));
        }
        if let Some(path) = &settings.public_key_path {
            let (alg, key) = load_public_key(path)?;
            verifiers.push((alg, key, validation(alg, settings)));
        }
        Ok(Authenticator { verifiers, secret })
    }

    /// Verifies a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = decode_header(token).map_err(|_| AuthError::Invalid)?;
        let (_, key, validation) = self
            .verifiers
            .iter()
            .find(|(alg, _, _)| *alg == header.alg)
            .ok_or(AuthError::Invalid)?;
        let data = decode::<Claims>(token, key, validation).map_err(|err| match err.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        let claims = data.claims;
        let user_id = UserId::parse(&claims.sub).ok_or(AuthError::Invalid)?;
        let expires_at = Utc
            .timestamp_opt(claims.exp, 0)
            .single()
            .ok_or(AuthError::Invalid)?;
        let role = match claims.role.as_deref() {
            Some("admin") => Role::Admin,
            Some("service") => Role::Service,
            _ => Role::User,
        };
        Ok(Identity {
            user_id,
            role,
            expires_at,
        })
    }

    /// Signs an HS256 token (dev tokens); `None` without a shared secret.
    pub fn mint(&self, sub: &str, role: Option<&str>, expires_at: DateTime<Utc>) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let claims = Claims {
            sub: sub.to_owned(),
            exp: expires_at.timestamp(),
            role: role.map(str::to_owned),
        };
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .ok()
    }
}

fn validation(alg: Algorithm, settings: &JwtSettings) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = 0;
    validation.validate_nbf = true;
    // A configured issuer or audience must be present, not merely right when present.
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &settings.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &settings.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn load_public_key(path: &Path) -> Result<(Algorithm, DecodingKey), KeyError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: shown.clone(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((Algorithm::ES256, key));
    }
    Err(KeyError::Format(shown))
}

/// The token of a request's `Authorization: Bearer` header, if any.
pub fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn hs(secret: &str) -> Authenticator {
        let settings = JwtSettings {
            secret: Some(secret.into()),
            ..JwtSettings::default()
        };
        match Authenticator::new(&settings, false) {
            Ok(auth) => auth,
            Err(err) => panic!("{err}"),
        }
    }

    fn token(auth: &Authenticator, sub: &str, role: Option<&str>, in_secs: i64) -> String {
        auth.mint(sub, role, Utc::now() + Duration::seconds(in_secs))
            .unwrap_or_default()
    }

    #[test]
    fn accepts_a_good_token_and_reads_its_role() {
        let auth = hs("s");
        let id = auth.verify(&token(&auth, "alice", Some("admin"), 60));
        assert_eq!(
            id.map(|i| (i.user_id.to_string(), i.role)),
            Ok(("alice".into(), Role::Admin))
        );
        let id = auth.verify(&token(&auth, "bob", Some("seller"), 60));
        assert_eq!(id.map(|i| i.role), Ok(Role::User));
        let id = auth.verify(&token(&auth, "be", Some("service"), 60));
        assert_eq!(id.map(|i| i.role), Ok(Role::Service));
    }

    #[test]
    fn refuses_missing_forged_expired_and_none_tokens() {
        let auth = hs("s");
        assert_eq!(auth.verify(""), Err(AuthError::Missing));
        assert_eq!(auth.verify("garbage"), Err(AuthError::Invalid));
        let forged = token(&hs("other"), "alice", None, 60);
        assert_eq!(auth.verify(&forged), Err(AuthError::Invalid));
        assert_eq!(
            auth.verify(&token(&auth, "alice", None, -5)),
            Err(AuthError::Expired)
        );
        // {"alg":"none","typ":"JWT"} . {"sub":"alice","exp":9999999999} . (no signature)
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert_eq!(auth.verify(none), Err(AuthError::Invalid));
        assert_eq!(
            auth.verify(&token(&auth, "bad id!", None, 60)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn codes_follow_the_contract() {
        assert_eq!(AuthError::Missing.code(), "missing_token");
        assert_eq!(AuthError::Invalid.code(), "invalid_token");
        assert_eq!(AuthError::Expired.code(), "token_expired");
    }
}
