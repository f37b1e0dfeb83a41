//! Failure injection: a TCP proxy in front of the real PostgreSQL that forwards, refuses new
//! connections or blackholes (holds bytes, answers nothing) on command, and the URLs that
//! route a store through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Proxy mode: pass bytes both ways.
pub const FORWARD: u8 = 0;
/// Proxy mode: cut open connections and refuse new ones.
pub const REFUSE: u8 = 1;
/// Proxy mode: keep connections open and answer nothing.
pub const BLACKHOLE: u8 = 2;

/// A TCP proxy to the real PostgreSQL that can refuse or blackhole on command.
pub struct Proxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    changed: Arc<Notify>,
}

impl Proxy {
    /// Listens on `port` (0: any) and forwards to `upstream`.
    pub async fn start(port: u16, upstream: String) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let changed = Arc::new(Notify::new());
        let (m, c) = (mode.clone(), changed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if m.load(Ordering::SeqCst) == REFUSE {
                    drop(client);
                    continue;
                }
                let (m, c, upstream) = (m.clone(), c.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    pipe(client, server, m, c).await;
                });
            }
        });
        Proxy {
            port,
            mode,
            changed,
        }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// Copies both ways until either side closes, the proxy refuses (connections are cut) or
/// blackholes (bytes are held, nothing is answered).
async fn pipe(client: TcpStream, server: TcpStream, mode: Arc<AtomicU8>, changed: Arc<Notify>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let copy = async {
        tokio::select! {
            _ = tokio::io::copy(&mut cr, &mut sw) => {}
            _ = tokio::io::copy(&mut sr, &mut cw) => {}
        }
    };
    let watch = async {
        loop {
            let notified = changed.notified();
            if mode.load(Ordering::SeqCst) != FORWARD {
                return;
            }
            notified.await;
        }
    };
    tokio::select! {
        () = copy => {}
        () = watch => {}
    }
    if mode.load(Ordering::SeqCst) == BLACKHOLE {
        // Keep the sockets open and silent until the test ends.
        std::future::pending::<()>().await;
    }
}

/// The test database's URL with the host and port replaced by the proxy's.
pub fn through(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (auth, rest) = rest.rsplit_once('@').map_or(("", rest), |(a, r)| (a, r));
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("{auth}@")
    };
    format!("{scheme}://{auth}127.0.0.1:{port}{path}")
}

/// `host:port` of the database a URL names, for the proxy to forward to.
pub fn upstream(url: &str) -> String {
    let rest = url.split_once("://").expect("scheme").1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}
