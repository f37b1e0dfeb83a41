//! Graceful shutdown: a request in flight when shutdown starts still gets its answer, `serve`
//! returns, and the port no longer accepts connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Bound on every wait here; none is a sleep.
const PATIENCE: Duration = Duration::from_secs(10);

/// Tries to connect until the listener is gone (the accept loop stopped).
async fn wait_until_refused(app: &TestApp) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match TcpStream::connect(app.addr).await {
                Err(_) => return,
                Ok(stream) => drop(stream),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener closes after the shutdown signal");
}

/// Reads from `stream` until `needle` has arrived (or the peer closes).
async fn read_until(stream: &mut TcpStream, buffer: &mut Vec<u8>, needle: &[u8]) {
    tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 4096];
        while !buffer.windows(needle.len()).any(|w| w == needle) {
            let n = stream.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the server answers");
}

#[tokio::test]
async fn serve_returns_after_shutdown_and_new_connections_are_refused() {
    let mut app = spawn_app().await;
    let api = app.api(Protocol::Rest, Version::V2);
    ok(&api, api.list(Some(&app.admin()), Default::default()).await);
    let grpc = app.api(Protocol::Grpc, Version::V2);
    ok(
        &grpc,
        grpc.list(Some(&app.admin()), Default::default()).await,
    );

    let server = app.trigger_shutdown();
    let result = tokio::time::timeout(PATIENCE, server)
        .await
        .expect("serve returns once idle connections are closed")
        .expect("the server task did not panic");
    assert!(result.is_ok(), "serve ended cleanly: {result:?}");
    assert!(
        TcpStream::connect(app.addr).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test]
async fn a_request_in_flight_during_shutdown_still_gets_its_answer() {
    let mut app = spawn_app().await;
    let admin = app.admin();
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    // `Expect: 100-continue` makes the server say when the handler starts reading the body:
    // from then on the request is in flight.
    let head = format!(
        "POST /zitadel.session.v2.SessionService/ListSessions HTTP/1.1\r\n\
         Host: {}\r\n\
         Content-Type: application/json\r\n\
         Connect-Protocol-Version: 1\r\n\
         Authorization: {admin}\r\n\
         Content-Length: 2\r\n\
         Expect: 100-continue\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut buffer = Vec::new();
    read_until(&mut stream, &mut buffer, b"\r\n\r\n").await;
    let interim = String::from_utf8_lossy(&buffer).to_string();
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue"),
        "interim answer: {interim:?}"
    );

    let server = app.trigger_shutdown();
    wait_until_refused(&app).await;
    assert!(
        !server.is_finished(),
        "serve waits for the request in flight"
    );

    stream.write_all(b"{}").await.expect("write body");
    buffer.clear();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buffer))
        .await
        .expect("the answer comes and the connection closes")
        .expect("read");
    let answer = String::from_utf8_lossy(&buffer).to_string();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "answer: {answer:?}");
    assert!(
        answer.ends_with(r#"{"details":{"timestamp":"2025-03-04T15:13:33.203Z"}}"#),
        "answer: {answer:?}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "no keep-alive while shutting down: {answer:?}"
    );

    let result = tokio::time::timeout(PATIENCE, server)
        .await
        .expect("serve returns after the last answer")
        .expect("the server task did not panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(TcpStream::connect(app.addr).await.is_err());
}
