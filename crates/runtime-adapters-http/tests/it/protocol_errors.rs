//! Requests hyper refuses before any route sees them (a head over the limit, a request
//! line that does not parse, a bad `Content-Length`) answer with the same JSON error shape
//! as every other failure, on a raw socket.

use std::time::Duration;

use runtime_adapters_http::HttpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stub::serve_stub_with;

/// Sends raw bytes, reads until the server closes, returns (status, headers, body).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String, serde_json::Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything (an oversized
    // head): a failed write is fine, the answer is what counts.
    let _ = s.write_all(request).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the server neither answered nor closed");
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head: {text:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    let json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, head.to_ascii_lowercase(), json)
}

fn assert_shape(status: u16, head: &str, v: &serde_json::Value, code: u16) {
    assert_eq!(status, code, "{head}\n{v}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        !v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_answer_with_the_json_error_shape() {
    let (http, _stub, stop, server, c) = serve_stub_with(
        Duration::ZERO,
        HttpConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..HttpConfig::default()
        },
    )
    .await;
    let addr = http.local_addr();

    // A head far over the limit: 431.
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (status, head, v) = raw(addr, big.as_bytes()).await;
    assert_shape(status, &head, &v, 431);

    // A request line that does not parse: 400.
    let (status, head, v) = raw(addr, b"NOT AN HTTP REQUEST\r\n\r\n").await;
    assert_shape(status, &head, &v, 400);

    // A bad header (an unparsable Content-Length): 400.
    let (status, head, v) = raw(
        addr,
        b"POST /admin/shutdown HTTP/1.1\r\nHost: t\r\nContent-Length: lots\r\n\r\n",
    )
    .await;
    assert_shape(status, &head, &v, 400);

    // A body over the limit, declared or chunked: 413.
    let (status, head, v) = raw(
        addr,
        b"POST /admin/config/reload HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 99999999\r\n\r\n",
    )
    .await;
    assert_shape(status, &head, &v, 413);

    // The server goes on serving.
    assert_eq!(c.get("/health/live").await.status, 200);
    stop.stop();
    server.await.unwrap().unwrap();
}
