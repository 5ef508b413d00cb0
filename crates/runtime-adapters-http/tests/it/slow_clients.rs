//! Slow, idle and surplus clients on raw sockets: the server closes them, so they cannot
//! hold the control plane (or the process's descriptors) for ever.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use runtime_adapters_http::HttpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stub::serve_stub_with;

/// Longest wait for an event that should come well before it.
const EVENT: Duration = Duration::from_secs(10);

fn config(header: Duration, idle: Duration, max: usize) -> HttpConfig {
    HttpConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        header_read_timeout: header,
        idle_timeout: idle,
        max_connections: max,
        ..HttpConfig::default()
    }
}

/// Reads until the server closes the connection (EOF or reset); panics after [`EVENT`].
async fn closed_by_server(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(EVENT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server did not close the connection");
}

/// Sends one keep-alive GET and reads its whole answer; returns the status line.
async fn get_keep_alive(s: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(EVENT, s.read(&mut buf))
            .await
            .expect("answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text.lines().next().unwrap_or_default().to_owned();
            }
        }
    }
}

async fn http_get_status(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    get_keep_alive(&mut s, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    let header = Duration::from_millis(500);
    let (http, _stub, stop, server, _c) =
        serve_stub_with(Duration::ZERO, config(header, Duration::from_secs(60), 512)).await;
    let addr = http.local_addr();
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        slow.push(tokio::spawn(async move {
            // Drip one header line at a time, never ending the head.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut buf = [0u8; 1024];
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if s.write_all(format!("x-drip-{i}: y\r\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                }
            }
        }));
    }
    // A normal client is still served meanwhile.
    assert!(http_get_status(addr, "/health").await.contains(" 200 "));
    for t in slow {
        tokio::time::timeout(EVENT, t)
            .await
            .expect("a slowloris connection stayed open")
            .unwrap();
    }
    assert!(started.elapsed() >= header);
    stop.stop();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_promptly() {
    let (http, _stub, stop, server, _c) = serve_stub_with(
        Duration::ZERO,
        config(Duration::from_secs(30), Duration::from_secs(60), 4),
    )
    .await;
    let addr = http.local_addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Served, so it holds one of the four places.
        assert!(get_keep_alive(&mut s, "/health").await.contains(" 200 "));
        held.push(s);
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    closed_by_server(&mut extra).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // A place frees up when a held connection goes.
    drop(held.pop());
    let served = tokio::time::timeout(EVENT, async {
        loop {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s
                .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                .await;
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf).await
                && n > 0
            {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("no place freed");
    assert!(served.contains(" 200 "), "{served}");
    stop.stop();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let (http, _stub, stop, server, _c) =
        serve_stub_with(Duration::ZERO, config(Duration::from_secs(30), idle, 64)).await;
    let mut s = TcpStream::connect(http.local_addr()).await.unwrap();
    assert!(get_keep_alive(&mut s, "/health").await.contains(" 200 "));
    let t = Instant::now();
    closed_by_server(&mut s).await;
    assert!(
        t.elapsed() >= idle - Duration::from_millis(50),
        "{:?}",
        t.elapsed()
    );
    // An idle connection that never sends a byte is closed too.
    let mut silent = TcpStream::connect(http.local_addr()).await.unwrap();
    closed_by_server(&mut silent).await;
    stop.stop();
    server.await.unwrap().unwrap();
}
