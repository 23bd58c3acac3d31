//! Client-token administration on the socket (docs/api.md, "Client tokens"):
//! `POST /v1/client-tokens` mints, `GET /v1/client-tokens` lists, `DELETE
//! /v1/client-tokens/{id}` revokes. The owner alone reaches these: the access table
//! says so and `access::authorize` has enforced it before a handler runs.
//!
//! Minting and revoking write the file first (on the blocking pool); an answer
//! other than success means nothing changed.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_proto::api;
use latchkey_proto::delegation::TokenId;
use latchkey_proto::error::{Category, ErrorBody};
use latchkey_proto::request as rq;

use super::access::Caller;
use super::routes::{fail, parse_body, problem, reply};
use super::state::Daemon;
use crate::convert;
use crate::delegation::DelegationError;
use crate::error::EngineError;

type Shared = State<Arc<Daemon>>;

pub(super) async fn mint(
    State(d): Shared,
    Extension(_): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let request = match parse_body::<api::MintRequest>(&body) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return problem(
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    category: Category::Usage,
                    message:
                        "send {\"scopes\": [\"token:PROFILE\", …], \"name\"?, \"ttl_seconds\"?}"
                            .into(),
                    hint: Some("see docs/api.md".into()),
                    retryable: false,
                },
                None,
            );
        }
        Err(r) => return r,
    };
    let minted = d
        .engine
        .blocking(move |e| e.mint_client_token(request.name, request.scopes, request.ttl_seconds))
        .await
        .and_then(|r| r);
    match minted {
        Ok(m) => {
            tracing::info!(
                target: "latchkey::audit",
                token_id = %m.record.id,
                token_name = %m.record.name,
                scopes = %latchkey_proto::delegation::scopes_text(&m.record.scopes),
                "client token minted"
            );
            let mut r = reply::<rq::MintClientToken>(convert::minted(m), None, "minted");
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Err(e) => fail(&e, None, None),
    }
}

pub(super) async fn list(State(d): Shared, Extension(_): Extension<Caller>) -> Response {
    match d.engine.client_tokens().list() {
        Ok(records) => reply::<rq::ListClientTokens>(
            api::ClientTokens {
                tokens: records.into_iter().map(convert::client_token).collect(),
            },
            None,
            "served",
        ),
        Err(e) => fail(&e.into(), None, None),
    }
}

pub(super) async fn revoke(
    State(d): Shared,
    Extension(_): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = TokenId::new(id.clone()) else {
        return problem(
            StatusCode::NOT_FOUND,
            ErrorBody {
                category: Category::Usage,
                message: format!(
                    "no client token with id {:?}",
                    id.chars().take(40).collect::<String>()
                ),
                hint: Some("see `latchkey client-token list`".into()),
                retryable: false,
            },
            None,
        );
    };
    let revoked = {
        let id = id.clone();
        d.engine
            .blocking(move |e| e.client_tokens().revoke(&id).map_err(EngineError::from))
            .await
            .and_then(|r| r)
    };
    match revoked {
        Ok(()) => {
            tracing::info!(target: "latchkey::audit", token_id = %id, "client token revoked");
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.extensions_mut().insert(super::routes::Audit {
                profile: None,
                outcome: "revoked",
            });
            r
        }
        Err(e @ EngineError::Delegation(DelegationError::NotFound(_))) => {
            let mut r = fail(&e, None, None);
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
        Err(e) => fail(&e, None, None),
    }
}
