//! Health, status, the error shape of every failure, auth, and binding rules.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, header};
use runtime_adapters_http::{HttpConfig, HttpControlPlane};
use runtime_contracts::{EndpointError, Secret, Task, TaskError};
use runtime_testkit::fakes::{FnHandler, VecSource};

use crate::{Opts, TOKEN, start};

fn ok_handler() -> Arc<FnHandler> {
    FnHandler::new(Duration::ZERO, |_: &Task, _: &_| Ok::<(), TaskError>(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_status() {
    let mut opts = Opts::new(ok_handler());
    opts.sources = vec![VecSource::new("src", vec![Task::new("t", "1")])];
    let h = start(opts).await;
    let c = &h.client;

    let live = c.get("/health/live").await;
    assert_eq!(live.status, 200);
    assert_eq!(live.json(), serde_json::json!({"status": "up"}));
    assert!(
        live.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );

    let ready = c.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let body = ready.json();
    assert_eq!(body["status"], "up");
    let names: Vec<&str> = body["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"runtime") && names.contains(&"queue:q"),
        "{names:?}"
    );

    let health = c.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "up");

    let status = c.get("/status").await;
    assert_eq!(status.status, 200);
    let s = status.json();
    assert_eq!(s["state"], "running");
    assert_eq!(s["modules"][0]["name"], "test-module");
    assert_eq!(s["sources"][0]["name"], "src");
    assert_eq!(s["sources"][0]["kind"], "vec");
    assert_eq!(s["queues"][0]["name"], "q");
    assert_eq!(s["queues"][0]["backend"], "memory");
    assert_eq!(s["pools"][0]["name"], "p");
    assert_eq!(s["pools"][0]["concurrency"], 2);
    assert!(s["uptime_seconds"].as_f64().unwrap() >= 0.0);
    // The whole thing is the contract's RuntimeStatus.
    serde_json::from_value::<runtime_contracts::RuntimeStatus>(s).unwrap();

    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_has_the_json_error_shape() {
    let mut opts = Opts::new(ok_handler());
    opts.http.body_limit_bytes = 1024;
    let h = start(opts).await;
    let c = &h.client;
    let json = |v: &str| Some(("application/json", v.as_bytes().to_vec()));

    // 404: unknown path, unknown source / pool / dead letter / queue.
    c.get("/nope").await.assert_error(404);
    c.get("/health/nope").await.assert_error(404);
    let m = c.admin(Method::POST, "/admin/nope").await.assert_error(404);
    assert!(m.contains("POST /admin/nope"), "{m}");
    let m = c
        .admin(Method::POST, "/admin/sources/ghost/pause")
        .await
        .assert_error(404);
    assert!(m.contains("ghost"), "{m}");
    c.admin(Method::POST, "/admin/sources/ghost/resume")
        .await
        .assert_error(404);
    c.admin_json(
        "/admin/pools/ghost/concurrency",
        serde_json::json!({"concurrency": 2}),
    )
    .await
    .assert_error(404);
    let id = "0123456789abcdef0123456789abcdef";
    c.admin(Method::POST, &format!("/admin/dead-letters/{id}/retry"))
        .await
        .assert_error(404);
    c.admin(Method::DELETE, &format!("/admin/dead-letters/{id}"))
        .await
        .assert_error(404);
    c.admin(Method::GET, "/admin/dead-letters?queue=ghost")
        .await
        .assert_error(404);

    // 405, keeping the Allow header.
    let r = c.send(Method::POST, "/status", None, None).await;
    r.assert_error(405);
    assert!(r.headers.contains_key(header::ALLOW));
    c.send(Method::DELETE, "/metrics", None, None)
        .await
        .assert_error(405);
    c.admin(Method::GET, "/admin/shutdown")
        .await
        .assert_error(405);
    c.admin(Method::GET, "/admin/config/reload")
        .await
        .assert_error(405);

    // 400: bad JSON, wrong shape, bad values, bad ids, bad query.
    let path = "/admin/pools/p/concurrency";
    c.send(Method::POST, path, Some(TOKEN), json("{not json"))
        .await
        .assert_error(400);
    c.send(
        Method::POST,
        path,
        Some(TOKEN),
        json("{\"concurrency\": \"many\"}"),
    )
    .await
    .assert_error(400);
    c.send(Method::POST, path, Some(TOKEN), json("{\"workers\": 3}"))
        .await
        .assert_error(400);
    c.send(
        Method::POST,
        path,
        Some(TOKEN),
        json("{\"concurrency\": -1}"),
    )
    .await
    .assert_error(400);
    c.admin_json(path, serde_json::json!({"concurrency": 0}))
        .await
        .assert_error(400);
    c.send(Method::POST, path, Some(TOKEN), None)
        .await
        .assert_error(415);
    let m = c
        .admin(Method::POST, "/admin/dead-letters/not-an-id/retry")
        .await
        .assert_error(400);
    assert!(m.contains("not-an-id"), "{m}");
    c.admin(Method::DELETE, "/admin/dead-letters/zz")
        .await
        .assert_error(400);
    c.admin(Method::GET, "/admin/dead-letters?limit=abc")
        .await
        .assert_error(400);
    c.admin(Method::GET, "/admin/dead-letters?limit=0")
        .await
        .assert_error(400);
    c.admin(Method::GET, "/admin/dead-letters?limit=-3")
        .await
        .assert_error(400);

    // 413: declared too large, and on a route that never reads its body.
    let big = format!("{{\"concurrency\": 2, \"pad\": \"{}\"}}", "x".repeat(4096));
    c.send(Method::POST, path, Some(TOKEN), json(&big))
        .await
        .assert_error(413);
    c.send(
        Method::POST,
        "/admin/config/reload",
        Some(TOKEN),
        json(&big),
    )
    .await
    .assert_error(413);

    // Weird but valid input: percent-encoded names are just names.
    c.admin(Method::POST, "/admin/sources/%E2%9C%93%20x/pause")
        .await
        .assert_error(404);

    // The runtime is still fine after all that.
    assert_eq!(c.get("/health/ready").await.status, 200);
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_token() {
    let h = start(Opts::new(ok_handler())).await;
    let c = &h.client;
    let path = "/admin/dead-letters";

    let r = c.send(Method::GET, path, None, None).await;
    r.assert_error(401);
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    c.send(Method::GET, path, Some("wrong"), None)
        .await
        .assert_error(401);
    c.send(Method::GET, path, Some(&format!("{TOKEN}x")), None)
        .await
        .assert_error(401);
    // Unknown admin routes do not tell an anonymous caller they do not exist.
    c.send(Method::POST, "/admin/secret-route", None, None)
        .await
        .assert_error(401);
    // Purge, the one destructive call on this path, is refused alike.
    c.send(Method::DELETE, path, None, None)
        .await
        .assert_error(401);
    c.send(Method::DELETE, path, Some("wrong"), None)
        .await
        .assert_error(401);
    // Nothing happened: the runtime still runs.
    c.send(Method::POST, "/admin/shutdown", Some("wrong"), None)
        .await
        .assert_error(401);
    assert_eq!(h.handle.state(), runtime_contracts::RuntimeState::Running);
    // The right token works.
    let ok = c.admin(Method::GET, path).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["count"], 0);
    // Health and metrics need none.
    assert_eq!(c.get("/metrics").await.status, 200);
    h.rt.stop().await;

    // No token configured: admin routes are off (403), whatever the caller sends.
    let mut opts = Opts::new(ok_handler());
    opts.token = None;
    let h = start(opts).await;
    let c = &h.client;
    c.send(Method::GET, path, None, None)
        .await
        .assert_error(403);
    c.send(Method::GET, path, Some(TOKEN), None)
        .await
        .assert_error(403);
    c.send(Method::DELETE, path, Some(TOKEN), None)
        .await
        .assert_error(403);
    c.send(Method::POST, "/admin/shutdown", Some(TOKEN), None)
        .await
        .assert_error(403);
    assert_eq!(h.handle.state(), runtime_contracts::RuntimeState::Running);
    assert_eq!(c.get("/health/live").await.status, 200);
    h.rt.stop().await;
}

#[tokio::test]
async fn bind_refuses_unsafe_settings_and_taken_ports() {
    // Non-loopback without a token: refused before binding anything.
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8080"] {
        let err = HttpControlPlane::bind(HttpConfig {
            bind: addr.parse().unwrap(),
            ..HttpConfig::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, EndpointError::Config(_)), "{addr}: {err:?}");
        assert!(err.to_string().contains("token"), "{err}");
        // An empty token is no token.
        let err = HttpControlPlane::bind(HttpConfig {
            bind: addr.parse().unwrap(),
            token: Some(Secret::new("")),
            ..HttpConfig::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, EndpointError::Config(_)), "{addr}: {err:?}");
    }
    let loopback = || HttpConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    };
    for bad in [
        HttpConfig {
            body_limit_bytes: 0,
            ..loopback()
        },
        HttpConfig {
            request_timeout: Duration::ZERO,
            ..loopback()
        },
    ] {
        assert!(matches!(
            HttpControlPlane::bind(bad).await.unwrap_err(),
            EndpointError::Config(_)
        ));
    }
    // A taken port fails at bind, naming the address.
    let first = HttpControlPlane::bind(loopback()).await.unwrap();
    let addr = first.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let err = HttpControlPlane::bind(HttpConfig {
        bind: addr,
        ..HttpConfig::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, EndpointError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    // The default is loopback.
    assert!(HttpConfig::default().bind.ip().is_loopback());
    // The token never shows in Debug.
    let with_token = HttpControlPlane::bind(HttpConfig {
        token: Some(Secret::new(TOKEN)),
        ..loopback()
    })
    .await
    .unwrap();
    assert!(!format!("{with_token:?}").contains(TOKEN));
}
