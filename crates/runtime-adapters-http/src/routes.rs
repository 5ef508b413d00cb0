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
    CancelOutcome, ConfigIssue, ControlPlane, HealthReport, HealthStatus, ReloadReport, TaskId,
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

/// Who may call an admin route once roles exist (issue: users and roles). Until then
/// every admin route takes the one admin token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    /// Reads: inspect, list.
    Viewer,
    /// Day-to-day actions: pause/resume, dead letters, enqueue, cancel, concurrency.
    Operator,
    /// Configuration and life cycle.
    Admin,
}

/// Every admin route (method, path under `/admin`, role it needs), in one table: the
/// router is built from it ([`admin_handler`]) and the roles change enforces it.
pub(crate) const ADMIN_ROUTES: &[(&str, &str, Role)] = &[
    ("POST", "/sources/{name}/pause", Role::Operator),
    ("POST", "/sources/{name}/resume", Role::Operator),
    ("POST", "/config/reload", Role::Admin),
    ("GET", "/dead-letters", Role::Viewer),
    ("DELETE", "/dead-letters", Role::Operator),
    ("POST", "/dead-letters/{id}/retry", Role::Operator),
    ("DELETE", "/dead-letters/{id}", Role::Operator),
    ("POST", "/pools/{name}/concurrency", Role::Operator),
    ("POST", "/shutdown", Role::Admin),
    ("GET", "/tasks/{id}", Role::Viewer),
    ("DELETE", "/tasks/{id}", Role::Operator),
    ("POST", "/queues/{queue}/tasks", Role::Operator),
];

/// The handler of one admin route of [`ADMIN_ROUTES`].
fn admin_handler(method: &str, path: &str) -> Option<axum::routing::MethodRouter<AppState>> {
    Some(match (method, path) {
        ("POST", "/sources/{name}/pause") => post(pause_source),
        ("POST", "/sources/{name}/resume") => post(resume_source),
        ("POST", "/config/reload") => post(reload_config),
        ("GET", "/dead-letters") => get(list_dead_letters),
        ("DELETE", "/dead-letters") => delete(purge_dead_letters),
        ("POST", "/dead-letters/{id}/retry") => post(retry_dead_letter),
        ("DELETE", "/dead-letters/{id}") => delete(delete_dead_letter),
        ("POST", "/pools/{name}/concurrency") => post(set_concurrency),
        ("POST", "/shutdown") => post(shutdown),
        ("GET", "/tasks/{id}") => get(inspect_task),
        ("DELETE", "/tasks/{id}") => delete(cancel_task),
        ("POST", "/queues/{queue}/tasks") => post(enqueue_task),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_route_has_a_handler_and_a_role() {
        for &(method, path, role) in ADMIN_ROUTES {
            assert!(admin_handler(method, path).is_some(), "{method} {path}");
            let _ = role;
        }
        let roles = |r: Role| ADMIN_ROUTES.iter().filter(|e| e.2 == r).count();
        assert_eq!(
            (
                roles(Role::Viewer),
                roles(Role::Operator),
                roles(Role::Admin)
            ),
            (2, 8, 2)
        );
    }

    #[test]
    fn an_enqueue_body_is_checked_field_by_field() {
        let err = |v: serde_json::Value| enqueue_request(v).err().map(|e| e.message);
        let named = |v: serde_json::Value, field: &str| {
            let m = err(v).unwrap_or_default();
            assert!(m.starts_with(&format!("{field}:")), "{m}");
        };
        named(json!({"payload": 1}), "route");
        named(json!({"route": ""}), "route");
        named(json!({"route": 5}), "route");
        named(json!({"route": "r", "colour": "red"}), "colour");
        named(json!({"route": "r", "delay": "-5s"}), "delay");
        named(json!({"route": "r", "delay": "soon"}), "delay");
        named(json!({"route": "r", "delay": 10}), "delay");
        named(json!({"route": "r", "delay": "400d"}), "delay");
        named(json!({"route": "r", "unique_key": 7}), "unique_key");
        named(json!({"route": "r", "unique_key": ""}), "unique_key");
        named(json!([1, 2]), "body");
        let t = enqueue_request(json!({
            "route": "send-invoice", "payload": {"order": 7}, "unique_key": "inv-7", "delay": "10s"
        }))
        .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(t.route, "send-invoice");
        assert_eq!(t.payload, br#"{"order":7}"#);
        assert_eq!(t.unique_key(), Some("inv-7"));
        assert!(t.not_before_ms.is_some());
        let t = enqueue_request(json!({"route": "r"})).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(t.payload, b"null");
        assert_eq!(t.not_before_ms, None);
    }

    #[test]
    fn a_long_id_is_not_echoed() {
        let long = "x".repeat(5000);
        let e = task_id(&long).err().map(|e| e.message).unwrap_or_default();
        assert!(e.len() < 100 && e.starts_with("id:"), "{e}");
    }
}

#[derive(Clone)]
struct AppState {
    plane: Arc<dyn ControlPlane>,
}

/// Builds the whole application: routes, auth and the hardening layers.
pub(crate) fn router(plane: Arc<dyn ControlPlane>, config: &HttpConfig) -> Router {
    let check = TokenCheck::new(config.token.as_ref());
    let admin = ADMIN_ROUTES
        .iter()
        .filter_map(|&(method, path, _)| Some((path, admin_handler(method, path)?)))
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler))
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

/// Parses a task id from a path. The error names the field and never echoes the input
/// (it may be thousands of characters).
fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    raw.parse::<TaskId>().map_err(|_| {
        let n = raw.chars().count();
        ApiError::bad_request(if n <= 64 {
            format!("id: expected 32 hex digits, got {raw:?}")
        } else {
            format!("id: expected 32 hex digits, got {n} characters")
        })
    })
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

/// `GET /admin/tasks/{id}`: the task's state and fields; an id no queue knows answers
/// 200 with `"state": "unknown"` (a state like the others, as the spec lists it).
async fn inspect_task(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let tid = task_id(&id)?;
        Ok::<_, ApiError>(s.plane.task(tid).await?)
    }
    .await;
    finish(&caller, "inspect_task", &id, StatusCode::OK, r)
}

/// `DELETE /admin/tasks/{id}`: 200 `{"cancelled": "removed" | "signalled"}`, 404 when
/// unknown, 409 for a dead task (its dead letter is deleted with the dead-letter route).
async fn cancel_task(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let tid = task_id(&id)?;
        match s.plane.cancel_task(tid).await? {
            CancelOutcome::Removed => Ok(json!({"id": tid, "cancelled": "removed"})),
            CancelOutcome::Signalled => Ok(json!({"id": tid, "cancelled": "signalled"})),
            CancelOutcome::Dead => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("task {tid} is dead; delete it with DELETE /admin/dead-letters/{tid}"),
            )),
            CancelOutcome::Unknown => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no queue has task {tid}"),
            )),
        }
    }
    .await;
    finish(&caller, "cancel_task", &id, StatusCode::OK, r)
}

/// Longest route an enqueue by hand accepts.
const MAX_ROUTE_BYTES: usize = 256;

/// The body of `POST /admin/queues/{queue}/tasks`, checked field by field so each error
/// names its field (serde's type errors name only a line and column).
fn enqueue_request(body: serde_json::Value) -> Result<runtime_contracts::Task, ApiError> {
    let bad = |field: &str, why: &str| ApiError::bad_request(format!("{field}: {why}"));
    let serde_json::Value::Object(mut fields) = body else {
        return Err(ApiError::bad_request(
            "body: expected a JSON object with route, payload, unique_key, delay",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "route" | "payload" | "unique_key" | "delay"))
    {
        let shown: String = unknown.chars().take(64).collect();
        return Err(bad(
            &shown,
            "unknown field; expected route, payload, unique_key, delay",
        ));
    }
    let route = match fields.remove("route") {
        Some(serde_json::Value::String(r)) if r.trim().is_empty() => {
            return Err(bad("route", "must not be empty"));
        }
        Some(serde_json::Value::String(r)) if r.len() > MAX_ROUTE_BYTES => {
            return Err(bad(
                "route",
                &format!("longer than {MAX_ROUTE_BYTES} bytes"),
            ));
        }
        Some(serde_json::Value::String(r)) => r,
        Some(_) => return Err(bad("route", "expected a string")),
        None => return Err(bad("route", "missing")),
    };
    // The payload travels as JSON text: what a typed job's handler deserialises.
    let payload = fields.remove("payload").unwrap_or(serde_json::Value::Null);
    let payload = serde_json::to_vec(&payload).map_err(|e| bad("payload", &e.to_string()))?;
    let mut task = runtime_contracts::Task::new(route, payload);
    match fields.remove("unique_key") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(k)) if k.is_empty() => {
            return Err(bad("unique_key", "must not be empty"));
        }
        Some(serde_json::Value::String(k)) if k.len() > runtime_contracts::MAX_UNIQUE_KEY_BYTES => {
            return Err(bad(
                "unique_key",
                &format!(
                    "longer than {} bytes",
                    runtime_contracts::MAX_UNIQUE_KEY_BYTES
                ),
            ));
        }
        Some(serde_json::Value::String(k)) => task = task.with_unique_key(k),
        Some(_) => return Err(bad("unique_key", "expected a string")),
    }
    match fields.remove("delay") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(d)) => {
            let d = runtime_contracts::duration::parse(&d).map_err(|why| bad("delay", &why))?;
            if !d.is_zero() {
                task = task.with_delay(d);
            }
        }
        Some(_) => {
            return Err(bad(
                "delay",
                "expected a duration string like \"10s\" or \"5m\"",
            ));
        }
    }
    Ok(task)
}

/// `POST /admin/queues/{queue}/tasks`: 201 `{"id", "duplicate": false}`, or 200 with
/// `"duplicate": true` and the id of the live task with the same unique key.
async fn enqueue_task(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(queue): Path<String>,
    body: Result<JsonBody<serde_json::Value>, ApiError>,
) -> Response {
    let r = async {
        let JsonBody(body) = body?;
        let task = enqueue_request(body)?;
        Ok::<_, ApiError>(s.plane.enqueue(&queue, task).await?)
    }
    .await;
    let code = match &r {
        Ok(receipt) if receipt.duplicate => StatusCode::OK,
        _ => StatusCode::CREATED,
    };
    finish(&caller, "enqueue_task", &queue, code, r)
}
