//! The `/_admin/*` control endpoints: the JSON twin of the [`FakeIdp`](super::FakeIdp)
//! handle for tests that run the `fake-idp` binary as a separate process.
//!
//! They bypass the tracking middleware, so controlling the fake never shows up in its
//! counters or log and never consumes a scripted fault.
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `GET /_admin/faults` | | `[FaultScript]` still pending |
//! | `POST /_admin/faults` | `{"endpoint","fault","count"}` | `{"pending": [FaultScript]}` |
//! | `DELETE /_admin/faults` | | `{}` |
//! | `GET /_admin/counters` / `DELETE` resets | | `Counters` |
//! | `GET /_admin/log` / `DELETE` clears | | `[LoggedRequest]` |
//! | `GET /_admin/issued` | | `[IssuedToken]` |
//! | `GET /_admin/config` | | `ConfigPatch` with every field |
//! | `POST /_admin/config` | partial `ConfigPatch` | the new full `ConfigPatch`, 400 if invalid |
//! | `POST /_admin/revoke_all`, `/_admin/expire_access_tokens`, `/_admin/expire_device_codes` | | `{}` |
//! | `POST /_admin/device/approve`, `/_admin/device/deny` | `{"user_code"}` | `{"found": bool}`, 404 if not found |

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::config::ConfigPatch;
use super::model::{Counters, FaultScript};
use super::state::Shared;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/_admin/faults",
            get(list_faults).post(push_faults).delete(clear_faults),
        )
        .route("/_admin/counters", get(counters).delete(reset_counters))
        .route("/_admin/log", get(log).delete(clear_log))
        .route("/_admin/issued", get(issued))
        .route("/_admin/config", get(config).post(patch_config))
        .route("/_admin/revoke_all", post(revoke_all))
        .route("/_admin/expire_access_tokens", post(expire_access_tokens))
        .route("/_admin/expire_device_codes", post(expire_device_codes))
        .route("/_admin/device/approve", post(approve_device))
        .route("/_admin/device/deny", post(deny_device))
}

type Idp = State<Arc<Shared>>;

async fn list_faults(State(shared): Idp) -> Response {
    let pending = shared.lock().faults.clone();
    Json(pending).into_response()
}

async fn push_faults(State(shared): Idp, Json(script): Json<FaultScript>) -> Response {
    let pending = {
        let mut st = shared.lock();
        st.push_faults(script.endpoint, script.fault, script.remaining);
        st.faults.clone()
    };
    Json(json!({ "pending": pending })).into_response()
}

async fn clear_faults(State(shared): Idp) -> Response {
    shared.lock().faults.clear();
    Json(json!({})).into_response()
}

async fn counters(State(shared): Idp) -> Response {
    let counters = shared.lock().counters.clone();
    Json(counters).into_response()
}

async fn reset_counters(State(shared): Idp) -> Response {
    let old = std::mem::take(&mut shared.lock().counters);
    Json::<Counters>(old).into_response()
}

async fn log(State(shared): Idp) -> Response {
    let log = shared.lock().log.clone();
    Json(log).into_response()
}

async fn clear_log(State(shared): Idp) -> Response {
    let old = std::mem::take(&mut shared.lock().log);
    Json(old).into_response()
}

async fn issued(State(shared): Idp) -> Response {
    let issued = shared.lock().issued.clone();
    Json(issued).into_response()
}

async fn config(State(shared): Idp) -> Response {
    let full = ConfigPatch::from(&shared.lock().cfg);
    Json(full).into_response()
}

async fn patch_config(State(shared): Idp, Json(patch): Json<ConfigPatch>) -> Response {
    let result = {
        let mut st = shared.lock();
        patch
            .apply(&mut st.cfg)
            .map(|()| ConfigPatch::from(&st.cfg))
    };
    match result {
        Ok(full) => Json(full).into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response(),
    }
}

async fn revoke_all(State(shared): Idp) -> Response {
    shared.lock().revoke_all();
    Json(json!({})).into_response()
}

async fn expire_access_tokens(State(shared): Idp) -> Response {
    shared.lock().expire_access_tokens();
    Json(json!({})).into_response()
}

async fn expire_device_codes(State(shared): Idp) -> Response {
    shared.lock().expire_device_codes();
    Json(json!({})).into_response()
}

#[derive(Debug, Deserialize)]
struct UserCode {
    user_code: String,
}

async fn approve_device(State(shared): Idp, Json(body): Json<UserCode>) -> Response {
    decide(&shared, &body.user_code, true)
}

async fn deny_device(State(shared): Idp, Json(body): Json<UserCode>) -> Response {
    decide(&shared, &body.user_code, false)
}

fn decide(shared: &Shared, user_code: &str, approve: bool) -> Response {
    let found = shared.lock().decide_device(user_code, approve);
    let status = if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    (status, Json(json!({ "found": found }))).into_response()
}
