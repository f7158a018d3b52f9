//! RS256 and ES256 tokens checked with a configured public key.

use chrono::Utc;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::*;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sign(alg: Algorithm, key: EncodingKey, sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": Utc::now().timestamp() + 600});
    encode(&Header::new(alg), &claims, &key).unwrap()
}

async fn connect_reply(app: &TestApp, token: &str) -> String {
    let mut client = Client::open(app).await;
    client.connect(Some(token)).await
}

#[actix_web::test]
async fn rs256_tokens_are_checked_with_the_public_key() {
    let public = fixture("rs256.pub.pem");
    let app = TestApp::spawn_with(|s| {
        s.jwt.secret = None;
        s.jwt.public_key_path = Some(public.clone().into());
    })
    .await;
    let private = std::fs::read(fixture("rs256.key.pem")).unwrap();
    let token = sign(
        Algorithm::RS256,
        EncodingKey::from_rsa_pem(&private).unwrap(),
        "ola",
    );
    assert!(connect_reply(&app, &token).await.starts_with("40{"));

    // Algorithm confusion: HS256 signed with the public key's text is refused.
    let pem = std::fs::read(&public).unwrap();
    let confused = sign(Algorithm::HS256, EncodingKey::from_secret(&pem), "ola");
    assert!(connect_reply(&app, &confused)
        .await
        .contains("invalid_token"));
    // So is a token signed with the test secret, which this node does not hold.
    assert!(connect_reply(&app, &app.token("ola"))
        .await
        .contains("invalid_token"));
}

#[actix_web::test]
async fn es256_tokens_are_checked_with_the_public_key() {
    let public = fixture("es256.pub.pem");
    let app = TestApp::spawn_with(|s| {
        s.jwt.secret = None;
        s.jwt.public_key_path = Some(public.clone().into());
    })
    .await;
    let private = std::fs::read(fixture("es256.key.pem")).unwrap();
    let token = sign(
        Algorithm::ES256,
        EncodingKey::from_ec_pem(&private).unwrap(),
        "pat",
    );
    assert!(connect_reply(&app, &token).await.starts_with("40{"));

    let rsa = std::fs::read(fixture("rs256.key.pem")).unwrap();
    let wrong_key = sign(
        Algorithm::RS256,
        EncodingKey::from_rsa_pem(&rsa).unwrap(),
        "pat",
    );
    assert!(connect_reply(&app, &wrong_key)
        .await
        .contains("invalid_token"));
}

#[actix_web::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = TestApp::spawn_with(|s| {
        s.jwt.issuer = Some("market".into());
        s.jwt.audience = Some("souk".into());
    })
    .await;
    let exp = Utc::now().timestamp() + 600;
    let good = hs256(json!({"sub": "q", "exp": exp, "iss": "market", "aud": "souk"}));
    assert!(connect_reply(&app, &good).await.starts_with("40{"));
    for claims in [
        json!({"sub": "q", "exp": exp, "iss": "other", "aud": "souk"}),
        json!({"sub": "q", "exp": exp, "iss": "market", "aud": "other"}),
        json!({"sub": "q", "exp": exp}),
    ] {
        let reply = connect_reply(&app, &hs256(claims.clone())).await;
        assert!(reply.contains("invalid_token"), "{claims}: {reply}");
    }
}
