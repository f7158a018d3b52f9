//! The server API's caller: a bearer token whose role is `service`.

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

/// Whoever a request's `Authorization: Bearer` token names, any role.
pub(super) fn bearer_identity(req: &HttpRequest) -> Result<Identity, Failure> {
    let app = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| Failure::new(Code::Internal, "no app state"))?;
    let token = crate::auth::bearer_token(req)
        .ok_or_else(|| Failure::new(Code::Unauthorized, "missing bearer token"))?;
    app.auth
        .verify(token)
        .map_err(|err| Failure::new(Code::Unauthorized, format!("token refused: {}", err.code())))
}
