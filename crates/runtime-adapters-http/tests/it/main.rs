//! The HTTP control plane against a real runtime (core + memory queue), through a real
//! HTTP client on a loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]

mod admin;
mod audit;
mod endpoints;
mod fd_reserve;
mod metrics;
mod prom;
mod protocol_errors;
mod slow_clients;
mod stub;
mod tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use runtime_adapters_http::{HttpConfig, HttpControlPlane};
use runtime_contracts::{
    ComponentHealth, HealthContributor, HealthStatus, PoolSpec, Secret, TaskHandler, TaskSource,
};
use runtime_testkit::fakes::{MemoryQueue, PartsModule, config, memory_queue};
use runtime_testkit::runtime_core::{ConfigurationManager, RuntimeHandle, RuntimeManager};

pub const TOKEN: &str = "test-admin-token-0123456789";

/// An answer: status, headers, body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status and the stable error shape.
    pub fn assert_error(&self, code: u16) -> String {
        assert_eq!(self.status, code, "{}", self.text());
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(ct.starts_with("application/json"), "{ct}");
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(!msg.is_empty(), "{v}");
        msg.to_owned()
    }
}

/// A small HTTP/1.1 client bound to one server.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Client {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Resp, hyper_util::client::legacy::Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some((ct, bytes)) => {
                req = req.header(header::CONTENT_TYPE, ct);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.inner.request(req.body(body).unwrap()).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        self.try_send(method, path, token, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: request failed: {e:?}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, None).await
    }

    /// An admin call with the right token.
    pub async fn admin(&self, method: Method, path: &str) -> Resp {
        self.send(method, path, Some(TOKEN), None).await
    }

    pub async fn admin_json(&self, path: &str, body: serde_json::Value) -> Resp {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.send(
            Method::POST,
            path,
            Some(TOKEN),
            Some(("application/json", bytes)),
        )
        .await
    }
}

/// A readiness contributor a test can switch down and up.
pub struct Toggle {
    pub up: AtomicBool,
}

#[async_trait]
impl HealthContributor for Toggle {
    fn name(&self) -> &str {
        "toggle"
    }
    async fn check(&self) -> ComponentHealth {
        let status = if self.up.load(Ordering::SeqCst) {
            HealthStatus::Up
        } else {
            HealthStatus::Down
        };
        ComponentHealth::new("toggle", status).with_detail("switch", "test")
    }
}

/// What a test runtime is made of.
pub struct Opts {
    pub token: Option<&'static str>,
    pub sources: Vec<Arc<dyn TaskSource>>,
    pub handler: Arc<dyn TaskHandler>,
    pub health: Vec<Arc<dyn HealthContributor>>,
    pub max_attempts: u32,
    pub config: Option<Arc<ConfigurationManager>>,
    pub http: HttpConfig,
}

impl Opts {
    pub fn new(handler: Arc<dyn TaskHandler>) -> Self {
        Opts {
            token: Some(TOKEN),
            sources: Vec::new(),
            handler,
            health: Vec::new(),
            max_attempts: 3,
            config: None,
            http: HttpConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                ..HttpConfig::default()
            },
        }
    }
}

/// A running runtime with the HTTP control plane on a loopback port.
pub struct Harness {
    pub rt: RuntimeManager,
    pub handle: RuntimeHandle,
    pub queue: Arc<MemoryQueue>,
    pub client: Client,
}

/// Fast retries so tests do not wait on production backoff.
pub fn platform() -> serde_json::Value {
    serde_json::json!({
        "workers": {"retry_base": "20ms", "retry_max": "100ms", "task_timeout": "5s"},
        "runtime": {"shutdown_timeout": "5s"},
        "queue": {"visibility_timeout": "2s"}
    })
}

pub async fn start(opts: Opts) -> Harness {
    let cfg = match opts.config {
        Some(c) => c,
        None => config(platform()).await,
    };
    let queue = memory_queue("q", 1000, opts.max_attempts, Duration::from_secs(2));
    let module = PartsModule {
        sources: opts
            .sources
            .into_iter()
            .map(|s| (s, "q".to_owned()))
            .collect(),
        pools: vec![PoolSpec {
            name: "p".into(),
            queue: "q".into(),
            handler: opts.handler,
            concurrency: 2,
            task_timeout: Duration::from_secs(5),
        }],
        health: opts.health,
        ..Default::default()
    };
    let http = HttpControlPlane::bind(HttpConfig {
        token: opts.token.map(Secret::new),
        ..opts.http
    })
    .await
    .expect("bind 127.0.0.1:0");
    let client = Client::new(http.local_addr());
    let rt = RuntimeManager::builder(cfg)
        .queue(queue.clone())
        .module(Arc::new(module))
        .endpoint(Arc::new(http))
        .handle_signals(false)
        .build();
    rt.start().await.expect("runtime starts");
    let handle = rt.handle();
    let h = Harness {
        rt,
        handle,
        queue,
        client,
    };
    // The endpoint is spawned by start: wait until it answers.
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            h.client
                .try_send(Method::GET, "/health/live", None, None)
                .await
                .is_ok()
        })
        .await,
        "control plane never answered"
    );
    h
}

/// Waits until `f` holds or `timeout` passes.
pub async fn eventually_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f().await
}
