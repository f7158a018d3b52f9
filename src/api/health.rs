//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::{Code, Failure};
use crate::state::AppState;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when Postgres and Redis both answer, else 503.
pub async fn readyz(app: web::Data<AppState>) -> HttpResponse {
    let (postgres, redis) = futures_util::join!(app.db.ping(), app.broker.ping());
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let body = json!({ "postgres": word(postgres.is_ok()), "redis": word(redis.is_ok()) });
    if postgres.is_ok() && redis.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        let failure = Failure::new(Code::ServiceUnavailable, format!("stores: {body}"));
        HttpResponse::ServiceUnavailable().json(json!({
            "error": failure.body(),
            "postgres": body["postgres"],
            "redis": body["redis"],
        }))
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(app: web::Data<AppState>) -> Result<HttpResponse, Failure> {
    let text = app
        .metrics
        .render()
        .map_err(|err| Failure::new(Code::Internal, format!("metrics: {err}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}
