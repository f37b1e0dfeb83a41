//! Signals: revocations pushed to relying services as signed tokens, by two standards.
//!
//! - **OpenID Shared Signals (SSF 1.0)** streams receive CAEP `session-revoked` (and
//!   `credential-change`) Security Event Tokens, by push (RFC 8935) or poll (RFC 8936).
//! - **OpenID Connect Back-Channel Logout 1.0** clients receive a logout token per session.
//!
//! Both are *targets*: rows in the store with a cursor into the session event log, and an
//! outbox for what the log does not hold. Why this shape:
//!
//! - **The event log is the source, the cursor the bookmark.** The log is already durable
//!   and ordered, so a push target (a push stream or a logout client) needs no copy of it: its
//!   worker reads a page of terminations after the cursor (`store::feed`), signs the page's
//!   tokens on the signing threads, posts them in order, and moves the cursor past an event
//!   once the receiver took every token of it (202 for a SET; 200 or 204 for a logout token).
//!   No token is stored; the store sees one guarded write of the cursor at most every
//!   [`CURSOR_EVERY`] per target (and when the worker catches up), instead of an insert and a
//!   delete per token in the database the session writer uses. Measured on 2 cores, the
//!   outbox writes per SET cost more of the API's rate than the signatures
//!   (`bench/ANALYSIS.md`, "Shared Signals").
//! - **At least once, same `jti`.** A crash between a receiver's answer and the cursor's
//!   write sends those tokens again (at most [`CURSOR_EVERY`] of them, more only if the
//!   store refused the write): each `jti` is derived from the target and the event's
//!   position ([`event_jti`]), so the resent token is the one the receiver already has, and
//!   receivers drop repeats by `jti`. A shutdown is no crash: [`Signals::run`] takes a stop
//!   signal, on which each worker finishes the token in hand, stores its cursor and gives its
//!   lease back before the server exits. A refused token stops the target: the cursor stays
//!   before its event, the worker backs off (exponential, with jitter) and signs and posts it
//!   again; a token whose event is older than `--signals-retry-for` (at least a day) is given
//!   up with a warning when it is refused once more.
//! - **The outbox** holds what the log does not: stream control events (verification,
//!   stream-updated, each appended after what is there), the tokens of a poll stream until
//!   acknowledged (RFC 8936 acknowledges by `jti`), and the tokens of a paused stream. It is
//!   filled from the log by [`Signals::fill`]: tokens appended and cursor moved in one
//!   transaction, only if the cursor is still where it was read. A push target delivers its
//!   outbox before the log after its cursor (the outbox's tokens come from before it).
//! - **Pruning and the cursor.** A prune deletes the events of sessions terminated (or
//!   expired) longer ago than `--terminated-before` (30 days by default): events a target's
//!   cursor has not passed are kept that long, past any retry (`--signals-retry-for`, 3 days
//!   by default) unless the operator sets retention below it. A target whose cursor is behind
//!   the prune horizon says so with one warning and continues after it.
//! - **One task per target**, woken by the feed's wake-up (in process, and from other
//!   replicas on PostgreSQL) and at least every second: a slow or dead receiver delays only
//!   its own target; requests and the session writer never wait for a receiver (signals use
//!   a connection pool of their own; every request to a receiver has a timeout).
//! - **One replica at a time per target**: a worker signs and delivers only while it holds
//!   the target's lease (a row column with an expiry, renewed every few seconds); another
//!   replica takes over once it lapses.
//! - **Status**: a paused stream signs into its outbox (at most
//!   `--signals-paused-max-events`, oldest dropped first), so a long pause keeps only its
//!   newest tokens, and delivers them when enabled again; a disabled stream moves its cursor
//!   without signing (its events are dropped). A push worker stores its cursor before it
//!   fills the outbox, so nothing it delivered is signed into it again.
//! - **Poll streams** keep their outbox until the receiver acknowledges each token; the poll
//!   request signs what is new itself (under the same cursor check), so a poll never waits
//!   for a worker.
//! - **Inactivity** (`inactivity_timeout`, SSF): a stream whose receiver made no management
//!   call and no poll for the timeout is paused by the transmitter, announced first by a
//!   stream-updated event appended while the stream is still enabled; the pause takes effect
//!   once the receiver took that event (or one more timeout later). The check runs with the
//!   worker list, every second, on every replica; guarded writes let one replica announce and
//!   one pause. Activity before the pause calls it off, with a second stream-updated event.
//! - **Metrics** (`metrics`): tokens signed, delivery outcomes, the depth (outbox rows plus
//!   terminations after the cursors) and the latency from a termination to its receiver's
//!   acknowledgement.
//!
//! Not here: the routes (`face`), what a token says (`tokens`), keys (`keys`), the checks of
//! receiver input (`targets`), the SQL (`store::signals`).

pub mod cli;
pub mod face;
pub mod keys;
pub mod metrics;
pub mod targets;
pub mod tokens;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber as _;

use crate::domain::{
    Clock, Error, ErrorKind, FeedPosition, Session, SessionEvent, SessionEventType, SessionId,
    TerminationReason, Time, error_ids,
};
use crate::feed::event_of;
use crate::store::signals::{DynSignalStore, Enqueue, NewItem, OutboxItem, TargetKind, TargetRow};
use crate::store::{DynStore, FeedBounds, FeedPage, FeedQuery, FeedWake, StoreError};

pub use keys::{KeyRing, KeySource};
pub use targets::HeaderSealer;

/// A signed token of `typ` carrying `claims`, with its `jti`.
fn sign_with(key: &keys::SigningKey, typ: &str, claims: &Value) -> Result<NewItem, Error> {
    let token = key.sign(typ, claims).map_err(|e| {
        Error::internal(
            error_ids::SIGNALS_SIGN,
            std::io::Error::other(e.to_string()),
        )
    })?;
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    Ok(NewItem {
        jti,
        token,
        occurred_at: None,
    })
}

/// The push and poll delivery methods of SSF.
pub const PUSH: &str = "urn:ietf:rfc:8935";
pub const POLL: &str = "urn:ietf:rfc:8936";

/// Events signed per store read.
const FILL_PAGE: u32 = 500;
/// Tokens read from an outbox at once for delivery.
const DELIVER_PAGE: u32 = 256;
/// The fewest tokens a signing thread is given at once.
const SIGN_CHUNK_MIN: usize = 16;
/// How long a lease lasts, and how often its holder renews it.
const LEASE: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// The least time between two writes of a push target's cursor while it delivers from the
/// log (a crash sends at most this much again, with the same `jti`s).
const CURSOR_EVERY: Duration = Duration::from_millis(250);
/// How long a worker delivers before it renews its lease.
const DELIVER_BUDGET: Duration = Duration::from_secs(5);
/// The first and the longest wait between two attempts of one token.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_LAST: Duration = Duration::from_secs(300);

/// What signals need from the settings.
#[derive(Clone, Debug)]
pub struct SignalSettings {
    /// `iss` of every token; `None`: the URL a receiver used to create its stream.
    pub issuer: Option<String>,
    pub allow_loopback_http: bool,
    pub retry_for: Duration,
    pub paused_max_events: u64,
    pub request_timeout: Duration,
    pub poll_timeout: Duration,
    /// A stream's `min_verification_interval`: sooner verification requests get 429.
    pub min_verification_interval: Duration,
    /// A stream's `inactivity_timeout`: a stream whose receiver shows no activity (a stream
    /// management call or a poll) for this long is paused. `None`: never.
    pub inactivity_timeout: Option<Duration>,
    /// PEM file of certificate authorities trusted for https receivers, besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The signals of one server: shared by the routes and the background workers. The two
/// reach the store through connections of their own (see [`Signals::run`]); everything else
/// (keys, metrics, the change signal) is one.
#[derive(Clone)]
pub struct Signals {
    inner: Arc<Inner>,
    /// The signals' tables, through the routes' pool or the workers'.
    store: DynSignalStore,
    /// The session event log.
    events: EventLog,
}

struct Inner {
    /// The pool the workers use, opened apart from the routes' ([`Signals::run`]).
    worker_store: DynSignalStore,
    clock: Arc<dyn Clock>,
    keys: KeyRing,
    sealer: HeaderSealer,
    settings: SignalSettings,
    http: reqwest::Client,
    /// This process, as a lease holder.
    owner: String,
    /// Raised when targets or outboxes change here: workers and poll waiters look again.
    changed: watch::Sender<u64>,
    metrics: metrics::SignalMetrics,
}

/// How one round of delivery ended.
enum Delivery {
    /// The outbox is empty.
    Done,
    /// Time to renew the lease; more is waiting.
    More,
    /// The receiver did not take the oldest token: back off.
    Failed,
}

/// How far a push target's receiver took the event log, beyond the stored cursor.
#[derive(Clone, Debug, PartialEq)]
struct Progress {
    /// The stored cursor this progress extends (it is stored only if that is still the one).
    base: String,
    /// Every token of the events up to here was taken (or given up).
    to: FeedPosition,
}

/// Where a page's delivery leaves the cursor: with `stop` (the index of the first event not
/// fully taken: a refused token, or the time budget), just before that event, i.e. at the
/// event before it, or where the page started; else at `scanned_to`, the end of the page
/// (which also covers events that made no token).
fn taken_through(
    after: FeedPosition,
    positions: &[FeedPosition],
    stop: Option<usize>,
    scanned_to: FeedPosition,
) -> FeedPosition {
    match stop {
        None => scanned_to.max(after),
        Some(0) => after,
        Some(i) => positions.get(i - 1).copied().unwrap_or(after).max(after),
    }
}

impl Signals {
    /// Signals over `store` (the routes' connections), `worker_store` (the workers', a pool
    /// of its own) and the session event log of `events`.
    pub fn new(
        store: DynSignalStore,
        worker_store: DynSignalStore,
        events: DynStore,
        clock: Arc<dyn Clock>,
        keys: KeyRing,
        sealer: HeaderSealer,
        settings: SignalSettings,
    ) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder();
        if let Some(path) = &settings.ca_file {
            http = targets::trust_authorities(http, path)?;
        }
        let http = http
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(5)))
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(targets::SafeResolver))
            .user_agent(concat!("sessiond/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            store,
            events: EventLog {
                store: events,
                home: None,
            },
            inner: Arc::new(Inner {
                worker_store,
                clock,
                keys,
                sealer,
                settings,
                http,
                owner: crate::domain::new_numeric_id(),
                changed: watch::Sender::new(0),
                metrics: metrics::SignalMetrics::default(),
            }),
        })
    }

    pub fn now(&self) -> Time {
        self.inner.clock.now()
    }

    pub fn settings(&self) -> &SignalSettings {
        &self.inner.settings
    }

    pub fn store(&self) -> &DynSignalStore {
        &self.store
    }

    pub fn sealer(&self) -> &HeaderSealer {
        &self.inner.sealer
    }

    /// The signals' metrics, for the Prometheus registry.
    pub fn metrics(&self) -> &metrics::SignalMetrics {
        &self.inner.metrics
    }

    /// Reads the outbox depths into their gauges (at scrape time).
    pub async fn refresh_metrics(&self) {
        match self.store.outbox_depths().await {
            Ok(depths) => self.inner.metrics.set_depths(&depths),
            Err(e) => tracing::warn!(error = ?e, "signals could not count their outboxes"),
        }
    }

    pub fn keys(&self) -> Arc<keys::Keys> {
        self.inner.keys.keys(self.now())
    }

    /// The public keys, as a JWKS.
    pub fn jwks(&self) -> Value {
        serde_json::json!({ "keys": self.keys().published })
    }

    /// Says that targets changed: workers start, stop or look again.
    pub fn touch(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Where a new target starts reading: after every event visible now.
    ///
    /// After a prune that emptied the log the head is its start again while the horizon is
    /// not: a target starts past both, so only events pruned after it existed make its worker
    /// warn (`deliver_log`).
    pub async fn head(&self) -> Result<String, Error> {
        let bounds = self.events.feed_bounds().await?;
        Ok(bounds.head.max(bounds.horizon).to_string())
    }

    fn sign(&self, typ: &str, claims: &Value) -> Result<NewItem, Error> {
        sign_with(&self.keys().signing, typ, claims)
    }

    /// Signs many tokens on the signing threads ([`keys::on_signing_thread`]): an RSA
    /// signature costs a few hundred microseconds of CPU, and a burst of revocations times the
    /// targets would otherwise hold the async workers that answer requests. A large batch is
    /// split over the threads; the tokens keep their order.
    async fn sign_all(&self, unsigned: Vec<(&'static str, Value)>) -> Result<Vec<NewItem>, Error> {
        if unsigned.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys().signing.clone();
        let chunk = unsigned
            .len()
            .div_ceil(keys::signing_parallelism())
            .max(SIGN_CHUNK_MIN);
        let mut unsigned = unsigned.into_iter();
        let mut parts = Vec::new();
        loop {
            let part: Vec<_> = unsigned.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            let key = key.clone();
            parts.push(keys::on_signing_thread(move || {
                part.iter()
                    .map(|(typ, claims)| sign_with(&key, typ, claims))
                    .collect::<Result<Vec<_>, _>>()
            }));
        }
        let mut items = Vec::new();
        for part in futures_util::future::join_all(parts).await {
            let part = part.map_err(|e| {
                Error::internal(
                    error_ids::SIGNALS_SIGN,
                    std::io::Error::other(e.to_string()),
                )
            })?;
            items.extend(part?);
        }
        Ok(items)
    }

    /// Appends a verification event to a stream's outbox (after what is there).
    pub async fn verify(&self, row: &TargetRow, state: Option<&str>) -> Result<(), Error> {
        let (iss, aud) = stream_iss_aud(row);
        let claims = tokens::verification(&iss, &aud, &new_jti(), self.now(), &row.id, state);
        let item = self.sign(tokens::SET_TYP, &claims)?;
        self.append(row, item).await
    }

    /// A stream-updated event of a stream, signed, announcing `status` for `reason`.
    fn stream_updated(
        &self,
        row: &TargetRow,
        status: &str,
        reason: &str,
    ) -> Result<NewItem, Error> {
        let (iss, aud) = stream_iss_aud(row);
        let claims =
            tokens::stream_updated(&iss, &aud, &new_jti(), self.now(), &row.id, status, reason);
        self.sign(tokens::SET_TYP, &claims)
    }

    /// Records a receiver's activity on its stream (a management call or a poll): it resets
    /// the inactivity timeout. A pause for inactivity that was announced but has not taken
    /// effect is called off, and a stream-updated event says the stream stays enabled.
    pub async fn activity(&self, row: &TargetRow) -> Result<(), Error> {
        let cancelled = self
            .store
            .record_activity(row.kind, &row.id, self.now())
            .await?;
        if cancelled.is_some() {
            let item = self.stream_updated(row, "enabled", tokens::ACTIVE_AGAIN)?;
            self.append(row, item).await?;
        }
        Ok(())
    }

    /// Pauses the streams whose receivers showed no activity for the inactivity timeout, in
    /// two steps so the receiver hears of it first (SSF: a transmitter-initiated status change
    /// is announced by a stream-updated event): a stream-updated event saying `paused` is
    /// appended while the stream is still enabled; the pause takes effect once the receiver
    /// took that event, or one more timeout later if it never does. Activity in between calls
    /// the pause off. Every replica sweeps; the store lets one announce and one pause.
    async fn sweep_inactive(&self, rows: &[TargetRow]) -> Result<(), Error> {
        let Some(timeout) = self.inner.settings.inactivity_timeout else {
            return Ok(());
        };
        let now = self.now();
        let store = &self.store;
        let enabled_streams = rows
            .iter()
            .filter(|r| r.kind == TargetKind::Stream && r.status == "enabled");
        for row in enabled_streams {
            match &row.inactivity_notice {
                None if row.last_activity.saturating_add(timeout) <= now => {
                    let item = self.stream_updated(row, "paused", tokens::INACTIVE)?;
                    if store
                        .announce_inactivity(&row.id, &item.jti, before(now, timeout), now)
                        .await?
                    {
                        self.append(row, item).await?;
                    }
                }
                Some((jti, at)) => {
                    let taken = !store.holds(row.kind, &row.id, jti).await?;
                    if (taken || at.saturating_add(timeout) <= now)
                        && store
                            .pause_inactive(&row.id, jti, tokens::INACTIVE, now)
                            .await?
                    {
                        tracing::info!(
                            stream_id = %row.id,
                            "a stream was paused: its receiver showed no activity for the \
                             inactivity timeout"
                        );
                        self.touch();
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Appends one token to a target's outbox, after what is there.
    async fn append(&self, row: &TargetRow, item: NewItem) -> Result<(), Error> {
        let enqueue = Enqueue {
            items: vec![item],
            ..Enqueue::default()
        };
        self.store
            .enqueue(row.kind, &row.id, &enqueue, self.now())
            .await?;
        self.inner.metrics.signed(row.kind, 1);
        self.touch();
        Ok(())
    }

    /// Drops every token waiting in a target's outbox (a disabled stream delivers nothing).
    pub async fn drop_outbox(&self, row: &TargetRow) -> Result<(), Error> {
        let store = &self.store;
        loop {
            let items = store.pending(row.kind, &row.id, DELIVER_PAGE).await?;
            if items.is_empty() {
                return Ok(());
            }
            let jtis: Vec<String> = items.into_iter().map(|i| i.jti).collect();
            store.remove_items(row.kind, &row.id, &jtis).await?;
        }
    }

    /// Signs the events after a target's cursor into its outbox, one page. Returns whether
    /// there may be more right away.
    pub async fn fill(&self, kind: TargetKind, id: &str) -> Result<bool, Error> {
        let store = &self.store;
        let Some(row) = store.target(kind, id).await? else {
            return Ok(false);
        };
        let after = FeedPosition::parse(&row.cursor).unwrap_or(FeedPosition::START);
        let page = self
            .events
            .feed_events(&FeedQuery {
                after,
                user_id: None,
                types: vec![SessionEventType::Terminated],
                limit: FILL_PAGE,
            })
            .await?;
        if page.scanned_to <= after && page.rows.is_empty() {
            return Ok(false);
        }
        if after < page.horizon {
            tracing::warn!(
                target_kind = kind.as_str(),
                target_id = id,
                "events were pruned before this target signed them; they are not signalled"
            );
        }
        let full = page.rows.len() >= FILL_PAGE as usize;
        let events: Vec<SessionEvent> = page.rows.into_iter().filter_map(event_of).collect();
        let items = if row.status == "disabled" {
            Vec::new()
        } else {
            let tokens = self.tokens_for(&row, &events).await?;
            tokens.into_iter().map(|(_, item)| item).collect()
        };
        let enqueue = Enqueue {
            cursor_from: Some(row.cursor.clone()),
            cursor_to: Some(page.scanned_to.max(after).to_string()),
            items,
            // A paused stream holds a bounded backlog; so does a poll stream nobody polls.
            keep_at_most: (row.status == "paused" || row.config["delivery"]["method"] == POLL)
                .then_some(self.inner.settings.paused_max_events),
        };
        let moved = store.enqueue(kind, id, &enqueue, self.now()).await?;
        if moved && !enqueue.items.is_empty() {
            self.touch();
        }
        // A cursor moved by another replica: read the target again.
        Ok(full || !moved)
    }

    /// The tokens of `events` for a target, signed, each with the index of its event in
    /// `events` (an event makes zero, one or two tokens, in order). Each `jti` is derived from
    /// the target and the event ([`event_jti`]): a token signed again for the same event (a
    /// retry, or a resend after a crash before the cursor moved) carries the same `jti`.
    async fn tokens_for(
        &self,
        row: &TargetRow,
        events: &[SessionEvent],
    ) -> Result<Vec<(usize, NewItem)>, Error> {
        let now = self.now();
        let mut unsigned = Vec::new();
        // Each token's event, in the order of `unsigned`.
        let mut of_event = Vec::new();
        match row.kind {
            TargetKind::Stream => {
                let (iss, aud) = stream_iss_aud(row);
                let delivered: Vec<&str> = row.config["events_delivered"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let stored = self.store.removed_subjects(&row.id).await?;
                let removed = tokens::RemovedSubjects::new(stored.iter().map(String::as_str));
                let mut changed_users = HashSet::new();
                for (i, event) in events.iter().enumerate() {
                    if removed.matches(event) {
                        continue;
                    }
                    if delivered.contains(&tokens::SESSION_REVOKED) {
                        let jti = event_jti(row, &event.cursor, tokens::SESSION_REVOKED);
                        let claims = tokens::session_revoked(&iss, &aud, &jti, now, event);
                        unsigned.push((tokens::SET_TYP, claims));
                        of_event.push(i);
                    }
                    if event.reason == Some(TerminationReason::PasswordChanged)
                        && delivered.contains(&tokens::CREDENTIAL_CHANGE)
                        && let Some(user) = &event.user_id
                        && changed_users.insert((user.clone(), event.occurred_at))
                    {
                        let jti = event_jti(row, &event.cursor, tokens::CREDENTIAL_CHANGE);
                        let claims = tokens::credential_change(
                            &iss,
                            &aud,
                            &jti,
                            now,
                            user,
                            event.occurred_at,
                        );
                        unsigned.push((tokens::SET_TYP, claims));
                        of_event.push(i);
                    }
                }
            }
            TargetKind::Logout => {
                let iss = row.config["iss"].as_str().unwrap_or_default().to_owned();
                let only_client = row.config["sessions"] == "client";
                let session_required = row.config["sessionRequired"] == true;
                for (i, event) in events.iter().enumerate() {
                    if only_client && !self.session_of_client(&event.session_id, &row.id).await? {
                        continue;
                    }
                    let jti = event_jti(row, &event.cursor, tokens::BACKCHANNEL_LOGOUT);
                    let Some(claims) =
                        tokens::logout(&iss, &row.id, &jti, now, event, session_required)
                    else {
                        continue;
                    };
                    unsigned.push((tokens::LOGOUT_TYP, claims));
                    of_event.push(i);
                }
            }
        }
        let items = self.sign_all(unsigned).await?;
        self.inner.metrics.signed(row.kind, items.len());
        Ok(of_event
            .into_iter()
            .zip(items)
            .map(|(i, mut item)| {
                item.occurred_at = Some(events[i].occurred_at);
                (i, item)
            })
            .collect())
    }

    /// Whether a session was created for this client (its metadata `client_id`).
    async fn session_of_client(&self, session: &str, client: &str) -> Result<bool, Error> {
        let id = SessionId::from_trusted(session.to_owned());
        let session = self.events.session(&id).await?;
        Ok(session.is_some_and(|s| {
            s.metadata.0.get("client_id").map(Vec::as_slice) == Some(client.as_bytes())
        }))
    }

    /// Runs the workers of every target until `stop` turns true (or its sender is gone).
    /// Then each worker stores how far its receiver took the log and gives its lease back,
    /// and this returns once all have: a stop loses no progress, so nothing a receiver took
    /// is sent again after a restart. (Dropped instead, the workers are aborted: their
    /// progress since the last stored cursor is sent again, with the same `jti`s.)
    ///
    /// The workers run on a runtime of their own whose threads have the idle CPU priority
    /// ([`keys::lower_this_threads_priority`]): building tokens and posting them is
    /// background work, and while requests keep the cores busy it waits instead of slowing
    /// them (measured: `bench/ANALYSIS.md`, "Shared Signals"). Nothing a request waits for
    /// may be held by a thread that waits for idle CPU, so the workers never share
    /// connections with the routes: their signal tables go through a pool of their own
    /// (`worker_store`), and their reads of the event log are made on the runtime that runs
    /// `run` (where a PostgreSQL connection of the requests' pool, or one of SQLite's
    /// bounded blocking reads, is driven at normal priority). Where no such runtime can be
    /// started the workers run beside the requests, as one task each. The workers log to the
    /// subscriber of the task that runs `run`.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let workers = Signals {
            inner: self.inner.clone(),
            store: self.inner.worker_store.clone(),
            events: EventLog {
                store: self.events.store.clone(),
                home: Some(tokio::runtime::Handle::current()),
            },
        };
        match IdleRuntime::start() {
            Ok(runtime) => {
                let _ = runtime
                    .spawn(workers.supervise(stop).with_current_subscriber())
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "signals could not start their own runtime; their workers run beside the requests");
                workers.supervise(stop).await;
            }
        }
    }

    /// Starts and stops the workers of every target (see [`Signals::run`]).
    async fn supervise(self, stop: watch::Receiver<bool>) {
        let mut stop = Stop(stop);
        let mut workers: HashMap<(TargetKind, String), Worker> = HashMap::new();
        let mut changed = self.inner.changed.subscribe();
        while !stop.raised() {
            changed.mark_unchanged();
            match self.store.targets(None).await {
                Ok(rows) => {
                    let live: HashSet<(TargetKind, String)> =
                        rows.iter().map(|r| (r.kind, r.id.clone())).collect();
                    workers.retain(|key, worker| live.contains(key) && !worker.0.is_finished());
                    for key in live {
                        workers.entry(key.clone()).or_insert_with(|| {
                            Worker(tokio::spawn(
                                self.clone()
                                    .work(key.0, key.1, stop.clone())
                                    .with_current_subscriber(),
                            ))
                        });
                    }
                    if let Err(e) = self.sweep_inactive(&rows).await {
                        tracing::warn!(error = ?e, "signals could not check streams for inactivity");
                    }
                }
                Err(e) => tracing::warn!(error = ?e, "signals could not list their targets"),
            }
            tokio::select! {
                _ = changed.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stop.wait() => {}
            }
        }
        // Every worker saw the same stop: wait for each to store its cursor.
        for worker in workers.values_mut() {
            let _ = (&mut worker.0).await;
        }
    }

    /// One target's worker: lease, sign, deliver, wait; until the target is gone, or until
    /// `stop`: then it finishes the token in hand, stores its progress and gives its lease
    /// back.
    async fn work(self, kind: TargetKind, id: String, mut stop: Stop) {
        let store = self.store.clone();
        let mut wake = self.events.feed_wake().subscribe();
        let mut changed = self.inner.changed.subscribe();
        let mut failures = 0u32;
        let release = Release {
            signals: self.clone(),
            kind,
            id: id.clone(),
            done: false,
        };
        // When this worker last took or renewed its lease: a round within RENEW_EVERY of it
        // writes nothing (the lease outlasts DELIVER_BUDGET plus RENEW_EVERY by far).
        let mut renewed: Option<tokio::time::Instant> = None;
        // How far the receiver took the log beyond the stored cursor, and when the cursor
        // was last stored.
        let mut progress: Option<Progress> = None;
        // The prune horizon this worker last warned about: a refused token after it keeps the
        // cursor behind it, and each retry reads past it again; one warning per prune.
        let mut warned_horizon: Option<FeedPosition> = None;
        let mut saved = {
            let now = tokio::time::Instant::now();
            now.checked_sub(CURSOR_EVERY).unwrap_or(now)
        };
        while !stop.raised() {
            wake.mark_unchanged();
            changed.mark_unchanged();
            let now = self.now();
            let until = now.saturating_add(LEASE);
            let fresh = renewed.is_some_and(|at| at.elapsed() < RENEW_EVERY);
            let leased = if fresh {
                Ok(true)
            } else {
                let at = tokio::time::Instant::now();
                let leased = store.lease(kind, &id, &self.inner.owner, now, until).await;
                renewed = matches!(leased, Ok(true)).then_some(at);
                leased
            };
            match leased {
                Ok(true) => {}
                Ok(false) => {
                    stop.sleep(RENEW_EVERY).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "signals could not take a lease; retrying");
                    stop.sleep(RENEW_EVERY).await;
                    continue;
                }
            }
            let row = match store.target(kind, &id).await {
                Ok(Some(row)) => row,
                Ok(None) => return,
                Err(_) => {
                    stop.sleep(RENEW_EVERY).await;
                    continue;
                }
            };
            // The stored cursor moved under the unsaved progress (another replica, or a
            // status change that dropped events): the stored one is the truth.
            if progress.as_ref().is_some_and(|p| p.base != row.cursor) {
                progress = None;
            }
            let pushes = row.status == "enabled"
                && (kind == TargetKind::Logout || row.config["delivery"]["method"] == PUSH);
            let more = if pushes {
                // Tokens the outbox holds (stream control events, tokens signed while the
                // stream was paused or polled) come first: they precede the cursor.
                let delivery = match self.deliver(&row, &stop).await {
                    Delivery::Done => {
                        self.deliver_log(&row, &mut progress, &mut warned_horizon, &changed, &stop)
                            .await
                    }
                    other => other,
                };
                match delivery {
                    Delivery::Done => {
                        failures = 0;
                        false
                    }
                    Delivery::More => {
                        failures = 0;
                        true
                    }
                    Delivery::Failed => {
                        failures = failures.saturating_add(1);
                        self.save_progress(kind, &id, &mut progress, &mut saved)
                            .await;
                        stop.sleep(backoff(failures)).await;
                        continue;
                    }
                }
            } else {
                // Paused, disabled or polled: the cursor is stored before the outbox is
                // filled from it.
                self.save_progress(kind, &id, &mut progress, &mut saved)
                    .await;
                if progress.is_some() {
                    stop.sleep(RENEW_EVERY).await;
                    continue;
                }
                match self.fill(kind, &id).await {
                    Ok(more) => more,
                    Err(e) => {
                        tracing::warn!(error = ?e, target_id = %id, "signing events failed; retrying");
                        false
                    }
                }
            };
            // The cursor is stored at most every CURSOR_EVERY: now if the last write is that
            // old, else once it is (below, while waiting).
            if progress.is_some() && tokio::time::Instant::now() >= saved + CURSOR_EVERY {
                self.save_progress(kind, &id, &mut progress, &mut saved)
                    .await;
            }
            let save_at = saved + CURSOR_EVERY;
            if more {
                continue;
            }
            let save_due = async {
                if progress.is_some() {
                    tokio::time::sleep_until(save_at).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = wake.changed() => {}
                _ = changed.changed() => {}
                () = save_due => {}
                () = tokio::time::sleep(RENEW_EVERY) => {}
                () = stop.wait() => {}
            }
        }
        // Stopping: what the receiver took is stored now, not CURSOR_EVERY later (a write
        // that fails here is lost, and those tokens are sent again after a restart).
        self.save_progress(kind, &id, &mut progress, &mut saved)
            .await;
        release.now().await;
    }

    /// Stores how far a target's receiver took the events of the log (one guarded write of
    /// the cursor); on a refusal (the cursor moved meanwhile) the progress is dropped, on an
    /// error it is kept for the next try.
    async fn save_progress(
        &self,
        kind: TargetKind,
        id: &str,
        progress: &mut Option<Progress>,
        saved: &mut tokio::time::Instant,
    ) {
        let Some(p) = progress.take() else {
            return;
        };
        let enqueue = Enqueue {
            cursor_from: Some(p.base.clone()),
            cursor_to: Some(p.to.to_string()),
            ..Enqueue::default()
        };
        match self.store.enqueue(kind, id, &enqueue, self.now()).await {
            Ok(_) => *saved = tokio::time::Instant::now(),
            Err(e) => {
                tracing::warn!(error = ?e, target_id = %id, "signals could not store a cursor; retrying");
                *progress = Some(p);
            }
        }
    }

    /// The receiver's URL and `Authorization` header of a push target.
    fn endpoint(&self, row: &TargetRow) -> Result<(String, Option<String>), Error> {
        let authorization = match &row.auth {
            Some(sealed) => Some(self.inner.sealer.open(row.kind, &row.id, sealed)?),
            None => None,
        };
        let url = match row.kind {
            TargetKind::Stream => row.config["delivery"]["endpoint_url"].as_str(),
            TargetKind::Logout => row.config["backchannelLogoutUri"].as_str(),
        }
        .unwrap_or_default()
        .to_owned();
        Ok((url, authorization))
    }

    /// Delivers the events of the log after a push target's cursor (or after its unsaved
    /// `progress`), page by page, for at most [`DELIVER_BUDGET`]: each page is read, signed
    /// and posted in order, and `progress` moves past an event once the receiver took every
    /// token of it (or it was given up). Nothing is written here; the worker stores the
    /// progress as the cursor at most every [`CURSOR_EVERY`]. On `stop` it ends after the
    /// event in hand, as when the time is up. A cursor behind the prune horizon is warned
    /// about once per horizon (`warned_horizon`), not on every retry.
    async fn deliver_log(
        &self,
        row: &TargetRow,
        progress: &mut Option<Progress>,
        warned_horizon: &mut Option<FeedPosition>,
        changed: &watch::Receiver<u64>,
        stop: &Stop,
    ) -> Delivery {
        let started = tokio::time::Instant::now();
        let (url, authorization) = match self.endpoint(row) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                crate::faces::status::log(&e);
                return Delivery::Failed;
            }
        };
        let stored = FeedPosition::parse(&row.cursor).unwrap_or(FeedPosition::START);
        loop {
            let after = progress.as_ref().map_or(stored, |p| p.to);
            let page = match self
                .events
                .feed_events(&FeedQuery {
                    after,
                    user_id: None,
                    types: vec![SessionEventType::Terminated],
                    limit: FILL_PAGE,
                })
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = ?e, "signals could not read the event log");
                    return Delivery::Failed;
                }
            };
            if page.scanned_to <= after && page.rows.is_empty() {
                return Delivery::Done;
            }
            // Targets changed since this round read `row`: a pause or a disable may be older
            // than events of this page, which must then not be pushed. Read the target again
            // (a round later, with the page read again) before posting anything of it.
            if changed.has_changed().unwrap_or(true) {
                return Delivery::More;
            }
            if after < page.horizon && *warned_horizon != Some(page.horizon) {
                *warned_horizon = Some(page.horizon);
                tracing::warn!(
                    target_kind = row.kind.as_str(),
                    target_id = %row.id,
                    "events were pruned before this target's receiver took them; they are not signalled"
                );
            }
            let full = page.rows.len() >= FILL_PAGE as usize;
            let scanned_to = page.scanned_to.max(after);
            let events: Vec<SessionEvent> = page.rows.into_iter().filter_map(event_of).collect();
            let tokens = match self.tokens_for(row, &events).await {
                Ok(tokens) => tokens,
                Err(e) => {
                    tracing::warn!(error = ?e, target_id = %row.id, "signing events failed; retrying");
                    return Delivery::Failed;
                }
            };
            let mut failed_at = None;
            let mut budget_at = None;
            let mut tokens = tokens.into_iter().peekable();
            'events: for (i, event) in events.iter().enumerate() {
                while let Some((_, item)) = tokens.next_if(|(of, _)| *of == i) {
                    let sent = self.send(
                        row.kind,
                        &url,
                        authorization.as_deref(),
                        &item.token,
                        item.occurred_at,
                    );
                    match sent.await {
                        Ok(()) => {}
                        Err(problem) if self.too_old(event.occurred_at) => {
                            tracing::warn!(
                                target_id = %row.id,
                                jti = %item.jti,
                                problem = %problem,
                                "giving up a signal its receiver did not take in time"
                            );
                            self.inner.metrics.given_up(row.kind);
                        }
                        Err(problem) => {
                            self.refused(row, None, &problem);
                            failed_at = Some(i);
                            break 'events;
                        }
                    }
                }
                let time_up = started.elapsed() >= DELIVER_BUDGET || stop.raised();
                if time_up && i + 1 < events.len() {
                    budget_at = Some(i + 1);
                    break;
                }
            }
            let positions: Vec<FeedPosition> = events
                .iter()
                .map(|e| FeedPosition::parse(&e.cursor).unwrap_or(after))
                .collect();
            let not_taken = failed_at.or(budget_at);
            let to = taken_through(after, &positions, not_taken, scanned_to);
            if to > after {
                *progress = Some(Progress {
                    base: row.cursor.clone(),
                    to,
                });
            }
            if failed_at.is_some() {
                return Delivery::Failed;
            }
            if budget_at.is_some() {
                return Delivery::More;
            }
            if !full {
                return Delivery::Done;
            }
            if started.elapsed() >= DELIVER_BUDGET || stop.raised() {
                return Delivery::More;
            }
        }
    }

    /// Whether an event happened longer than `--signals-retry-for` ago (a token of it that a
    /// receiver refuses is given up).
    fn too_old(&self, occurred_at: Time) -> bool {
        occurred_at.saturating_add(self.inner.settings.retry_for) < self.now()
    }

    /// Delivers a target's outbox in order, for at most [`DELIVER_BUDGET`] (or until `stop`).
    async fn deliver(&self, row: &TargetRow, stop: &Stop) -> Delivery {
        let started = tokio::time::Instant::now();
        let store = &self.store;
        let (url, authorization) = match self.endpoint(row) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                crate::faces::status::log(&e);
                return Delivery::Failed;
            }
        };
        // Tokens the receiver took, removed from the outbox in one write per page (or sooner,
        // before any return). A crash in between sends them again: receivers drop repeats by
        // `jti`, and in normal operation nothing is sent twice.
        let mut taken: Vec<String> = Vec::new();
        loop {
            if !self.forget(row, &mut taken).await {
                return Delivery::Failed;
            }
            let items = match store.pending(row.kind, &row.id, DELIVER_PAGE).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(error = ?e, "reading an outbox failed");
                    return Delivery::Failed;
                }
            };
            if items.is_empty() {
                return Delivery::Done;
            }
            for item in items {
                if self.expired(&item) {
                    tracing::warn!(
                        target_id = %row.id,
                        jti = %item.jti,
                        attempts = item.attempts,
                        "giving up a signal its receiver did not take in time"
                    );
                    self.inner.metrics.given_up(row.kind);
                    taken.push(item.jti);
                    continue;
                }
                let sent = self.send(
                    row.kind,
                    &url,
                    authorization.as_deref(),
                    &item.token,
                    item.occurred_at,
                );
                match sent.await {
                    Ok(()) => taken.push(item.jti),
                    Err(problem) => {
                        self.refused(row, Some(item.attempts + 1), &problem);
                        self.forget(row, &mut taken).await;
                        let _ = store.record_attempt(row.kind, &row.id, &item.jti).await;
                        return Delivery::Failed;
                    }
                }
                if started.elapsed() >= DELIVER_BUDGET || stop.raised() {
                    return if self.forget(row, &mut taken).await {
                        Delivery::More
                    } else {
                        Delivery::Failed
                    };
                }
            }
        }
    }

    /// Removes the tokens a receiver took from the target's outbox; false (they stay, and
    /// are sent again) when the store refuses.
    async fn forget(&self, row: &TargetRow, taken: &mut Vec<String>) -> bool {
        if taken.is_empty() {
            return true;
        }
        match self.store.remove_items(row.kind, &row.id, taken).await {
            Ok(_) => {
                taken.clear();
                true
            }
            Err(e) => {
                tracing::warn!(error = ?e, "delivered signals stay in the outbox; they will be sent again");
                false
            }
        }
    }

    fn expired(&self, item: &OutboxItem) -> bool {
        item.attempts > 0
            && item
                .created_at
                .saturating_add(self.inner.settings.retry_for)
                < self.now()
    }

    /// Posts one token; counts it delivered when the receiver took it.
    async fn send(
        &self,
        kind: TargetKind,
        url: &str,
        authorization: Option<&str>,
        token: &str,
        occurred_at: Option<Time>,
    ) -> Result<(), String> {
        self.post(kind, url, authorization, token).await?;
        self.inner.metrics.delivered(kind, occurred_at, self.now());
        Ok(())
    }

    /// Counts and logs a token a receiver refused, which is tried again after a backoff.
    fn refused(&self, row: &TargetRow, attempts: Option<i64>, problem: &str) {
        self.inner.metrics.retried(row.kind);
        tracing::warn!(
            target_kind = row.kind.as_str(),
            target_id = %row.id,
            attempts = ?attempts,
            problem = %problem,
            "a receiver did not take a signal; retrying with backoff"
        );
    }

    /// One POST to a receiver. The error says what went wrong, never with the token or the
    /// authorization header in it.
    async fn post(
        &self,
        kind: TargetKind,
        url: &str,
        authorization: Option<&str>,
        token: &str,
    ) -> Result<(), String> {
        let request = match kind {
            TargetKind::Stream => self
                .inner
                .http
                .post(url)
                .header(http::header::CONTENT_TYPE, "application/secevent+jwt")
                .header(http::header::ACCEPT, "application/json")
                .body(token.to_owned()),
            TargetKind::Logout => self
                .inner
                .http
                .post(url)
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(format!("logout_token={token}")),
        };
        let request = match authorization {
            Some(header) => request.header(http::header::AUTHORIZATION, header),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        let status = response.status().as_u16();
        let taken = match kind {
            TargetKind::Stream => status == 202,
            TargetKind::Logout => status == 200 || status == 204,
        };
        if taken {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }

    /// The tokens of a poll stream after acknowledging `acks`; waits up to the poll timeout
    /// (or `wait`) for one when there is none. Returns the tokens and whether more wait.
    pub async fn poll(
        &self,
        row: &TargetRow,
        acks: &[String],
        max: Option<u32>,
        wait: bool,
    ) -> Result<(Vec<OutboxItem>, bool), Error> {
        let store = &self.store;
        let now = self.now();
        for occurred_at in store.acknowledge(row.kind, &row.id, acks).await? {
            self.inner.metrics.delivered(row.kind, occurred_at, now);
        }
        if max == Some(0) {
            return Ok((Vec::new(), false));
        }
        let limit = max.unwrap_or(1000).min(1000);
        let deadline = tokio::time::Instant::now() + self.inner.settings.poll_timeout;
        let mut wake = self.events.feed_wake().subscribe();
        let mut changed = self.inner.changed.subscribe();
        loop {
            wake.mark_unchanged();
            changed.mark_unchanged();
            if row.status != "paused" {
                while self.fill(row.kind, &row.id).await? {}
            }
            let mut items = if row.status == "enabled" {
                store.pending(row.kind, &row.id, limit + 1).await?
            } else {
                Vec::new()
            };
            let more = items.len() > limit as usize;
            items.truncate(limit as usize);
            if !items.is_empty() || !wait || tokio::time::Instant::now() >= deadline {
                return Ok((items, more));
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = changed.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// A back-channel logout client to register.
pub struct LogoutClient<'a> {
    pub client_id: &'a str,
    pub uri: &'a str,
    pub session_required: bool,
    /// `all` sessions, or only those whose metadata `client_id` is the client's (`client`).
    pub sessions: &'a str,
    pub issuer: &'a str,
}

impl Signals {
    /// Registers a back-channel logout client; it receives logout tokens for sessions ended
    /// from now on.
    pub async fn add_logout_client(&self, client: LogoutClient<'_>) -> Result<TargetRow, Error> {
        targets::target_id("clientId", client.client_id)?;
        let uri = targets::receiver_url(client.uri, self.inner.settings.allow_loopback_http)?;
        if !matches!(client.sessions, "all" | "client") {
            return Err(Error::invalid_argument(
                error_ids::SIGNALS_INVALID,
                "sessions must be \"all\" or \"client\"",
            ));
        }
        let now = self.now();
        let row = TargetRow {
            kind: TargetKind::Logout,
            id: client.client_id.to_owned(),
            config: serde_json::json!({
                "iss": client.issuer,
                "backchannelLogoutUri": uri.as_str(),
                "sessionRequired": client.session_required,
                "sessions": client.sessions,
            }),
            auth: None,
            status: "enabled".into(),
            reason: None,
            cursor: self.head().await?,
            created_at: now,
            updated_at: now,
            last_activity: now,
            verified_at: Time::from_unix_micros(0),
            inactivity_notice: None,
        };
        match self.store.insert_target(&row).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    error_ids::SIGNALS_EXISTS,
                    "a back-channel logout client with this clientId exists",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.touch();
        Ok(row)
    }
}

/// The runtime of the signals workers: its threads run at the idle CPU priority. Shut down
/// without waiting when dropped, which may happen inside the requests' runtime (when the
/// server stops, or when the task running [`Signals::run`] is aborted).
struct IdleRuntime {
    handle: tokio::runtime::Handle,
    /// Taken on drop, to shut it down.
    runtime: Option<tokio::runtime::Runtime>,
}

impl IdleRuntime {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(keys::signing_parallelism())
            .max_blocking_threads(keys::signing_parallelism())
            .thread_name("signals")
            .on_thread_start(keys::lower_this_threads_priority)
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    fn spawn(
        &self,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        self.handle.spawn(work)
    }
}

impl Drop for IdleRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The session event log as the signals read it: directly (the routes), or on the runtime
/// of the requests (`home`, for the workers: see [`Signals::run`]).
#[derive(Clone)]
struct EventLog {
    store: DynStore,
    home: Option<tokio::runtime::Handle>,
}

impl EventLog {
    /// Runs `read` on the store, on `home` if there is one.
    async fn read<T, Fut>(&self, read: impl FnOnce(DynStore) -> Fut) -> Result<T, StoreError>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let work = read(self.store.clone());
        match &self.home {
            None => work.await,
            Some(home) => home
                .spawn(work.with_current_subscriber())
                .await
                .map_err(|_| StoreError::Unavailable("the server is stopping".into()))?,
        }
    }

    async fn feed_events(&self, query: &FeedQuery) -> Result<FeedPage, StoreError> {
        let query = query.clone();
        self.read(|store| async move { store.feed_events(&query).await })
            .await
    }

    async fn feed_bounds(&self) -> Result<FeedBounds, StoreError> {
        self.read(|store| async move { store.feed_bounds().await })
            .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let id = id.clone();
        self.read(|store| async move { store.session(&id).await })
            .await
    }

    fn feed_wake(&self) -> FeedWake {
        self.store.feed_wake()
    }
}

/// A worker task, stopped when dropped.
struct Worker(JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The signal that stops the workers (raised, or its sender gone).
#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn raised(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the stop is raised.
    async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }

    /// Sleeps for `duration`, or until the stop is raised.
    async fn sleep(&mut self, duration: Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.wait() => {}
        }
    }
}

/// Gives a worker's lease back when it stops, so another replica takes over at once: with
/// [`Release::now`] when the worker returns on the stop signal (before the server exits),
/// else on drop, from a task of its own (the worker ended or was aborted).
struct Release {
    signals: Signals,
    kind: TargetKind,
    id: String,
    done: bool,
}

impl Release {
    async fn now(mut self) {
        self.done = true;
        let signals = &self.signals;
        let _ = signals
            .store
            .release(self.kind, &self.id, &signals.inner.owner)
            .await;
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (signals, kind, id) = (self.signals.clone(), self.kind, self.id.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = signals.store.release(kind, &id, &signals.inner.owner).await;
            });
        }
    }
}

/// `iss` and `aud` of a stream's tokens.
fn stream_iss_aud(row: &TargetRow) -> (String, String) {
    (
        row.config["iss"].as_str().unwrap_or_default().to_owned(),
        row.config["aud"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `duration` before `t`.
pub fn before(t: Time, duration: Duration) -> Time {
    let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
    Time::from_unix_micros(t.unix_micros().saturating_sub(micros))
}

pub fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `jti` of the token of `event_type` that a target gets for the event at `position`: a
/// UUID (version 8) made of a SHA-256 of the target (kind, id, creation time), the position
/// and the event type. The same event and target always give the same `jti`, so a token sent
/// again after a crash is one receivers recognise; a target created again under the same id
/// starts at a later position and a later time, so it never repeats an earlier `jti`.
pub fn event_jti(row: &TargetRow, position: &str, event_type: &str) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for part in [
        "sessiond signal jti",
        row.kind.as_str(),
        &row.id,
        &row.created_at.unix_micros().to_string(),
        position,
        event_type,
    ] {
        // Length-prefixed, so no two different lists of parts hash the same bytes.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The wait after `failures` failed attempts in a row: doubling from 250 ms to 5 minutes,
/// each a random 50–100 % of it so receivers coming back are not hit all at once.
fn backoff(failures: u32) -> Duration {
    let full = BACKOFF_FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(BACKOFF_LAST);
    full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u64) -> FeedPosition {
        FeedPosition::new(0, n)
    }

    #[test]
    fn the_cursor_passes_an_event_only_once_every_token_of_it_was_taken() {
        let positions = [at(12), at(15), at(19)];
        // Every event taken: the end of the page, past events that made no token too.
        assert_eq!(taken_through(at(10), &positions, None, at(25)), at(25));
        // The first event refused: the cursor stays where the page started.
        assert_eq!(taken_through(at(10), &positions, Some(0), at(25)), at(10));
        // The third refused (or not reached in time): just past the second.
        assert_eq!(taken_through(at(10), &positions, Some(2), at(25)), at(15));
        // Never backwards.
        assert_eq!(taken_through(at(10), &[], None, at(3)), at(10));
    }

    fn target(id: &str, created: i64) -> TargetRow {
        TargetRow {
            kind: TargetKind::Stream,
            id: id.into(),
            config: Value::Null,
            auth: None,
            status: "enabled".into(),
            reason: None,
            cursor: "0".into(),
            created_at: Time::from_unix_micros(created),
            updated_at: Time::from_unix_micros(created),
            last_activity: Time::from_unix_micros(created),
            verified_at: Time::from_unix_micros(0),
            inactivity_notice: None,
        }
    }

    #[test]
    fn a_jti_is_the_same_for_the_same_target_and_event_and_differs_otherwise() {
        let a = target("a", 1);
        let jti = event_jti(&a, "7", tokens::SESSION_REVOKED);
        assert_eq!(jti, event_jti(&a.clone(), "7", tokens::SESSION_REVOKED));
        assert!(uuid::Uuid::parse_str(&jti).is_ok(), "{jti}");
        let others = [
            event_jti(&a, "8", tokens::SESSION_REVOKED),
            event_jti(&a, "7", tokens::CREDENTIAL_CHANGE),
            event_jti(&target("b", 1), "7", tokens::SESSION_REVOKED),
            event_jti(&target("a", 2), "7", tokens::SESSION_REVOKED),
        ];
        let mut all: HashSet<&String> = others.iter().collect();
        all.insert(&jti);
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        for failures in 1..40 {
            let wait = backoff(failures);
            let full = BACKOFF_FIRST
                .saturating_mul(1u32 << (failures - 1).min(20))
                .min(BACKOFF_LAST);
            assert!(wait <= full && wait >= full / 2, "{failures}: {wait:?}");
        }
    }
}
