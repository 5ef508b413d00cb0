//! The control plane's connection keys reach the server it binds, and unset keys keep the
//! server's own defaults.

use std::sync::Arc;
use std::time::Duration;

use mail_order_bot::config::{APP_NAME, config_spec};
use runtime_adapters_http::{HttpConfig, HttpControlPlane};
use runtime_contracts::ControlEndpoint;
use runtime_core::cli::{ConfigArgs, load_config};
use runtime_core::{ConfigurationManager, RuntimeManager, StopToken};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Loads a bot config whose `[control]` section holds `control` (plus what the bot needs).
async fn load(control: &str) -> Arc<ConfigurationManager> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bot.toml");
    std::fs::write(
        &path,
        format!(
            "[control]\nenabled = true\nbind = \"127.0.0.1:0\"\n{control}\n\
             [[orders.catalog]]\nsku = \"A-1\"\nname = \"Widget\"\nprice_cents = 100\n"
        ),
    )
    .unwrap();
    let config = load_config(
        &config_spec().env_vars(Vec::new),
        &ConfigArgs { config: vec![path] },
    )
    .await
    .unwrap();
    Arc::new(config)
}

async fn bind(config: &ConfigurationManager) -> Arc<HttpControlPlane> {
    let (plane, _) = runtime_compose::plan(&config.current(), APP_NAME)
        .unwrap()
        .bind_control(false)
        .await
        .unwrap()
        .expect("enabled");
    plane
}

async fn bound(control: &str) -> HttpConfig {
    bind(&*load(control).await).await.config().clone()
}

#[tokio::test]
async fn configured_connection_limits_reach_the_control_plane() {
    let c = bound("header_read_timeout = \"2s\"\nidle_timeout = \"300ms\"\nmax_connections = 3\n")
        .await;
    assert_eq!(c.header_read_timeout, Duration::from_secs(2));
    assert_eq!(c.idle_timeout, Duration::from_millis(300));
    assert_eq!(c.max_connections, 3);

    let d = bound("").await;
    let defaults = HttpConfig::default();
    assert_eq!(d.header_read_timeout, defaults.header_read_timeout);
    assert_eq!(d.idle_timeout, defaults.idle_timeout);
    assert_eq!(d.max_connections, defaults.max_connections);
}

/// The configured idle timeout is the one the server applies: a silent connection is
/// closed after it, not after the default minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_idle_timeout_closes_silent_connections() {
    let config = load("idle_timeout = \"200ms\"").await;
    let plane = bind(&config).await;
    let addr = plane.local_addr();
    let runtime = RuntimeManager::builder(config)
        .handle_signals(false)
        .build();
    let stop = StopToken::new();
    let server = {
        let plane = plane.clone();
        let control = runtime.handle().control_plane();
        let signal = stop.signal();
        tokio::spawn(async move { plane.serve(control, signal).await })
    };
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the silent connection was not closed by the configured idle timeout: {closed:?}"
    );
    stop.stop();
    server.await.unwrap().unwrap();
}

const RAISE_CHILD: &str = "MOB_TEST_RAISE_NOFILE_CHILD";

/// `run` raises the soft open-files limit to the hard one (the control plane sizes its
/// connection cap from it). The limit is process-wide, so a child process checks it.
#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_limit() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if std::env::var_os(RAISE_CHILD).is_some() {
        rlimit::setrlimit(rlimit::Resource::NOFILE, soft.min(hard).min(256), hard).unwrap();
        mail_order_bot::app::raise_open_files_limit();
        let (raised, hard_after) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(hard_after, hard);
        assert_eq!(raised, hard, "the soft limit stays at {raised}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "control_config::the_soft_open_files_limit_is_raised_to_the_hard_limit",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RAISE_CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
}
