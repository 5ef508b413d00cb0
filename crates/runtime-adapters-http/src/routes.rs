//! The routes: health, status and metrics for anyone on the bound address; `/admin/*`
//! behind the bearer token, each action audited.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use runtime_contracts::{
    ConfigIssue, ControlPlane, HealthReport, HealthStatus, ReloadReport, TaskId,
};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Caller, TokenCheck, audit, require_token};
use crate::error::{
    ApiError, JsonBody, catch_panic, declared_length_limit, error_body, json_errors, time_limit,
};
use crate::{HttpConfig, metrics, process};

/// Default and largest `limit` of `GET /admin/dead-letters`.
const DEFAULT_DEAD_LETTER_LIMIT: usize = 100;
const MAX_DEAD_LETTER_LIMIT: usize = 10_000;

#[derive(Clone)]
struct AppState {
    plane: Arc<dyn ControlPlane>,
}

/// Builds the whole application: routes, auth and the hardening layers.
pub(crate) fn router(plane: Arc<dyn ControlPlane>, config: &HttpConfig) -> Router {
    let check = TokenCheck::new(config.token.as_ref());
    let admin = Router::new()
        .route("/sources/{name}/pause", post(pause_source))
        .route("/sources/{name}/resume", post(resume_source))
        .route("/config/reload", post(reload_config))
        .route(
            "/dead-letters",
            get(list_dead_letters).delete(purge_dead_letters),
        )
        .route("/dead-letters/{id}/retry", post(retry_dead_letter))
        .route("/dead-letters/{id}", delete(delete_dead_letter))
        .route("/pools/{name}/concurrency", post(set_concurrency))
        .route("/shutdown", post(shutdown))
        .fallback(not_found)
        // On the whole nested router, fallback included: an unauthenticated caller
        // learns nothing about which admin routes exist.
        .layer(from_fn_with_state(check, require_token));
    let limit = config.body_limit_bytes;
    let timeout = config.request_timeout;
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(scrape))
        .nest("/admin", admin)
        .fallback(not_found)
        .with_state(AppState { plane })
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn(move |req: Request, next| {
            declared_length_limit(limit, req, next)
        }))
        .layer(from_fn(move |req: Request, next| {
            time_limit(timeout, req, next)
        }))
        .layer(from_fn(catch_panic))
        .layer(from_fn(json_errors))
}

async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

fn health_status(report: &HealthReport, ok: impl Fn(HealthStatus) -> bool) -> StatusCode {
    if ok(report.status) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn live(State(s): State<AppState>) -> Response {
    let h = s.plane.liveness().await;
    if h.status == HealthStatus::Down {
        let body = json!({"status": h.status, "details": h.details});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    } else {
        (StatusCode::OK, Json(json!({"status": h.status}))).into_response()
    }
}

async fn ready(State(s): State<AppState>) -> Response {
    let report = s.plane.readiness().await;
    let code = health_status(&report, |st| st == HealthStatus::Up);
    (code, Json(report)).into_response()
}

async fn health(State(s): State<AppState>) -> Response {
    let report = s.plane.health().await;
    let code = health_status(&report, |st| st != HealthStatus::Down);
    (code, Json(report)).into_response()
}

async fn status(State(s): State<AppState>) -> Response {
    Json(s.plane.status().await).into_response()
}

async fn scrape(State(s): State<AppState>) -> Response {
    let (status, proc_stats) = tokio::join!(s.plane.status(), process::read());
    let text = metrics::render(&status, &proc_stats);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// Answers an admin call and writes its audit line.
fn finish<T: serde::Serialize>(
    caller: &Caller,
    action: &str,
    object: &str,
    ok_status: StatusCode,
    result: Result<T, ApiError>,
) -> Response {
    match result {
        Ok(body) => {
            audit(caller, action, object, ok_status, "ok");
            (ok_status, Json(body)).into_response()
        }
        Err(e) => {
            audit(caller, action, object, e.status, &e.message);
            e.into_response()
        }
    }
}

async fn pause_source(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let r = s.plane.pause_source(&name).await.map_err(ApiError::from);
    finish(&caller, "pause_source", &name, StatusCode::OK, r)
}

async fn resume_source(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let r = s.plane.resume_source(&name).await.map_err(ApiError::from);
    finish(&caller, "resume_source", &name, StatusCode::OK, r)
}

/// An accepted reload answers 200 with the [`ReloadReport`]. A rejected one answers 422
/// (the request was understood, the new configuration is not valid; the old one stays)
/// with the report's fields and the stable `error` object side by side.
async fn reload_config(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match s.plane.reload_config().await {
        Ok(report) if report.accepted => {
            let result = format!(
                "ok: version {}, changed {:?}",
                report.version, report.changed_keys
            );
            audit(&caller, "reload_config", "config", StatusCode::OK, &result);
            Json(report).into_response()
        }
        Ok(report) => rejected_reload(&caller, report),
        Err(e) => {
            let e = ApiError::from(e);
            audit(&caller, "reload_config", "config", e.status, &e.message);
            e.into_response()
        }
    }
}

fn rejected_reload(caller: &Caller, report: ReloadReport) -> Response {
    let code = StatusCode::UNPROCESSABLE_ENTITY;
    let issues: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    let message = format!(
        "configuration rejected, version {} stays in force: {}",
        report.version,
        issues.join("; ")
    );
    audit(caller, "reload_config", "config", code, &message);
    let mut body = json!({
        "accepted": report.accepted,
        "version": report.version,
        "changed_keys": report.changed_keys,
        "errors": report.errors.iter().map(issue_json).collect::<Vec<_>>(),
    });
    if let (Some(obj), serde_json::Value::Object(err)) =
        (body.as_object_mut(), error_body(code, &message))
    {
        obj.extend(err);
    }
    (code, Json(body)).into_response()
}

/// A config issue as JSON. `ConfigOrigin::Other` cannot go through serde (an internally
/// tagged newtype variant holding a string), so an origin that fails is shown as text.
fn issue_json(issue: &ConfigIssue) -> serde_json::Value {
    serde_json::to_value(issue).unwrap_or_else(|_| {
        json!({
            "key": issue.key,
            "origin": issue.origin.as_ref().map(|o| json!({"kind": "other", "description": o.to_string()})),
            "value": issue.value,
            "message": issue.message,
        })
    })
}

#[derive(Deserialize)]
struct DeadLetterQuery {
    queue: Option<String>,
    limit: Option<usize>,
}

async fn list_dead_letters(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<DeadLetterQuery>,
) -> Response {
    let object = q.queue.clone().unwrap_or_else(|| "*".into());
    let limit = q.limit.unwrap_or(DEFAULT_DEAD_LETTER_LIMIT);
    let r = if limit == 0 || limit > MAX_DEAD_LETTER_LIMIT {
        Err(ApiError::bad_request(format!(
            "limit must be from 1 to {MAX_DEAD_LETTER_LIMIT}"
        )))
    } else {
        s.plane
            .dead_letters(q.queue.as_deref(), limit)
            .await
            .map(|letters| json!({"count": letters.len(), "dead_letters": letters}))
            .map_err(ApiError::from)
    };
    finish(&caller, "list_dead_letters", &object, StatusCode::OK, r)
}

/// Unknown parameters are refused: `?limit=10` must not silently purge everything.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeQuery {
    queue: Option<String>,
}

/// Answers the total and the count per queue; the audit line carries the total.
async fn purge_dead_letters(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<PurgeQuery>, QueryRejection>,
) -> Response {
    let action = "purge_dead_letters";
    let (object, r) = match query {
        Ok(Query(q)) => (
            q.queue.clone().unwrap_or_else(|| "*".into()),
            s.plane
                .purge_dead_letters(q.queue.as_deref())
                .await
                .map_err(ApiError::from),
        ),
        Err(e) => ("*".into(), Err(ApiError::bad_request(e.body_text()))),
    };
    match r {
        Ok(queues) => {
            let total: u64 = queues.iter().map(|q| q.purged).sum();
            let result = format!("ok: purged {total}");
            audit(&caller, action, &object, StatusCode::OK, &result);
            Json(json!({"purged": total, "queues": queues})).into_response()
        }
        Err(e) => {
            audit(&caller, action, &object, e.status, &e.message);
            e.into_response()
        }
    }
}

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    raw.parse::<TaskId>()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn retry_dead_letter(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let tid = task_id(&id)?;
        s.plane.retry_dead_letter(tid).await?;
        Ok::<_, ApiError>(json!({"retried": tid.to_string()}))
    }
    .await;
    finish(&caller, "retry_dead_letter", &id, StatusCode::OK, r)
}

async fn delete_dead_letter(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let tid = task_id(&id)?;
        s.plane.delete_dead_letter(tid).await?;
        Ok::<_, ApiError>(json!({"deleted": tid.to_string()}))
    }
    .await;
    finish(&caller, "delete_dead_letter", &id, StatusCode::OK, r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConcurrencyRequest {
    concurrency: usize,
}

async fn set_concurrency(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<JsonBody<ConcurrencyRequest>, ApiError>,
) -> Response {
    let r = match body {
        Ok(JsonBody(req)) => s
            .plane
            .set_concurrency(&name, req.concurrency)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    finish(&caller, "set_concurrency", &name, StatusCode::OK, r)
}

async fn shutdown(State(s): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let r = s
        .plane
        .shutdown()
        .await
        .map(|()| json!({"status": "shutting down"}))
        .map_err(ApiError::from);
    finish(&caller, "shutdown", "runtime", StatusCode::ACCEPTED, r)
}
