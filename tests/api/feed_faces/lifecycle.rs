//! Long-lived answers end when the server shuts down: gRPC with UNAVAILABLE, Connect with an
//! end-of-stream error, gRPC-Web with its trailers, SSE by closing; and the server's
//! shutdown is not held up by them.

use super::*;

#[tokio::test]
async fn shutdown_ends_every_open_stream_promptly() {
    let mut app = spawn_app().await;
    let admin = app.admin();
    let user = app.add_user("ada").await;
    let me = login(&app, &user).await;
    // Opened "from now" after the sign-in is readable, the streams have nothing to show.
    readable_as(&app, &me.id, "added").await;

    let mut grpc = grpc_client(&app)
        .watch_session_events(grpc_request(
            events::WatchSessionEventsRequest::default(),
            &admin,
        ))
        .await
        .expect("gRPC watch")
        .into_inner();
    let mut web = open_grpc_web(&app.h2, &app, Some(&admin), &Default::default()).await;
    let mut connect = open_connect(
        &app.http,
        &app,
        Codec::Json,
        Some(&admin),
        &Default::default(),
    )
    .await;
    let mut sse = Incoming::new(
        open_sse(
            &app.http,
            &app.url("/v1/session-events"),
            &[("authorization", &admin)],
        )
        .await,
    );
    let mut mine = Incoming::new(
        open_sse(
            &app.h2,
            &app.url("/auth/sessions/events"),
            &[("x-session-token", &me.token)],
        )
        .await,
    );

    let started = std::time::Instant::now();
    let server = app.trigger_shutdown();

    // A watch from now may begin with events committed just before it opened (PostgreSQL);
    // whatever comes first, each stream must then end.
    loop {
        match tokio::time::timeout(WAIT, grpc.message()).await {
            Ok(Err(status)) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                break;
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(_))) => {}
            Err(_) => panic!("the gRPC stream did not end"),
        }
    }
    loop {
        match next_grpc_web(&mut web).await {
            WebItem::Status(code) => {
                assert_eq!(code, Code::Unavailable);
                break;
            }
            WebItem::Event(_) => {}
        }
    }
    loop {
        match next_connect(&mut connect).await {
            ConnectItem::End(end) => {
                assert_eq!(end["error"]["code"], "unavailable", "{end}");
                break;
            }
            ConnectItem::Event(_) => {}
        }
    }
    assert!(sse.ends_within(WAIT).await, "the SSE stream ends");
    assert!(mine.ends_within(WAIT).await, "the self-service stream ends");
    let finished = tokio::time::timeout(WAIT, server).await;
    assert!(finished.is_ok(), "the server stops while streams were open");
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
}
