//! The callers of HTTP routes: the server API's (a bearer token whose role
//! is `service`) and the user reads' (a user's own token, never `service`).

use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};

use crate::auth::{Identity, Role};
use crate::error::{Code, Failure};
use crate::state::AppState;

/// A verified marketplace backend.
pub struct ServiceCaller(pub Identity);

impl FromRequest for ServiceCaller {
    type Error = Failure;
    type Future = Ready<Result<Self, Failure>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<ServiceCaller, Failure> {
    let identity = bearer_identity(req)?;
    if identity.role != Role::Service {
        return Err(Failure::new(
            Code::Forbidden,
            "the server API needs a service token",
        ));
    }
    Ok(ServiceCaller(identity))
}

/// A verified user (any role but `service`): the caller of the user reads
/// (§8a) and of the dev-mode demo backend.
pub struct UserCaller(pub Identity);

impl UserCaller {
    pub fn is_admin(&self) -> bool {
        self.0.role == Role::Admin
    }
}

impl FromRequest for UserCaller {
    type Error = Failure;
    type Future = Ready<Result<Self, Failure>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(bearer_identity(req).and_then(|identity| {
            if identity.role == Role::Service {
                return Err(Failure::new(Code::Forbidden, "a user token is needed here"));
            }
            // Each request costs one of the user's page reads (`SOUK_RATE_PAGES`).
            let app = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| Failure::new(Code::Internal, "no app state"))?;
            let user = identity.user_id.as_str();
            app.limiter
                .charge(user, crate::limits::Kind::Pages, 1, &app.metrics)?;
            Ok(UserCaller(identity))
        }))
    }
}

/// Whoever a request's `Authorization: Bearer` token names, any role.
pub(super) fn bearer_identity(req: &HttpRequest) -> Result<Identity, Failure> {
    let app = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| Failure::new(Code::Internal, "no app state"))?;
    let token = crate::auth::bearer_token(req.headers())
        .ok_or_else(|| Failure::new(Code::Unauthorized, "missing bearer token"))?;
    app.auth
        .verify(token)
        .map_err(|err| Failure::new(Code::Unauthorized, format!("token refused: {}", err.code())))
}
