//! A flood of connections cannot take the descriptors the rest of the process needs. The
//! open-files limit is lowered, so the test runs in a child process of its own (the test
//! binary again, told by an environment variable) and other tests keep theirs.

use std::process::Command;
use std::time::Duration;

use runtime_adapters_http::HttpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stub::serve_stub_with;

const CHILD: &str = "PLBA_HTTP_FD_RESERVE_CHILD";
/// Descriptors the child may open above what it has when the test starts.
const HEADROOM: u64 = 300;
/// Connections the flood opens: more than the headroom leaves after the reserve, fewer
/// than the headroom itself (each also costs the client side a descriptor).
const FLOOD: usize = 160;
/// Files opened at once during the flood: what a source would need.
const FILES: usize = 40;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[test]
fn a_connection_flood_leaves_descriptors_for_the_rest_of_the_process() {
    if !cfg!(target_os = "linux") {
        return;
    }
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fd_reserve::a_connection_flood_leaves_descriptors_for_the_rest_of_the_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
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

fn child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let soft = open_fds() + HEADROOM;
        rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard).unwrap();
        let (http, _stub, stop, server, _c) = serve_stub_with(
            Duration::ZERO,
            HttpConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                max_connections: 10_000,
                ..HttpConfig::default()
            },
        )
        .await;
        let addr = http.local_addr();
        // Every flood connection asks once: the server answers those it keeps and closes
        // the rest at accept.
        let mut kept = Vec::new();
        for i in 0..FLOOD {
            let mut s = TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("connection {i} failed: {e}"));
            if answers(&mut s).await {
                kept.push(s);
            }
        }
        assert!(!kept.is_empty(), "the server served nobody");
        assert!(
            (kept.len() as u64) < HEADROOM - 256,
            "the server kept {} connections, eating into the reserve",
            kept.len()
        );
        // The rest of the process can still open files.
        let files: Vec<std::fs::File> = (0..FILES)
            .map(|i| {
                std::fs::File::open("/proc/self/status")
                    .unwrap_or_else(|e| panic!("file {i} cannot be opened during the flood: {e}"))
            })
            .collect();
        drop(files);
        // When the flood goes, the server serves again.
        drop(kept);
        let served = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let mut s = TcpStream::connect(addr).await.unwrap();
                if answers(&mut s).await {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(served.is_ok(), "the server never served again");
        stop.stop();
        server.await.unwrap().unwrap();
    });
}

/// Sends a keep-alive GET; true when a 200 comes back, false when the server closed.
async fn answers(s: &mut TcpStream) -> bool {
    if s.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("neither answered nor closed")
    {
        Ok(n) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            true
        }
        _ => false,
    }
}
