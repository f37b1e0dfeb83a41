//! The hub of the session event feed: one background task per process reads new events from
//! the store by position and fans them out to every subscriber through one bounded in-memory
//! buffer (`tokio::sync::broadcast` of batches, sized from `--feed-buffer`).
//!
//! - The store is the truth. The hub reads it when the store says it appended events (its
//!   [`FeedWake`](crate::store::FeedWake): in process, and on PostgreSQL from other replicas
//!   by `LISTEN/NOTIFY`) and at least every `--feed-poll-interval`, so a lost wake-up only
//!   delays. Nothing the hub holds is needed after a crash: clients resume by cursor.
//! - Writers never wait for subscribers: the buffer is a ring. A subscriber that falls more
//!   than the buffer behind is told so by the ring and reads the store by its cursor instead,
//!   then joins the ring again (`subscription`). Memory stays bounded by the buffer, whatever
//!   the number or speed of subscribers.
//! - A subscriber joins the ring first, then catches up from the store, and skips what the
//!   ring brings up to where the store left it: every event once, in position order.
//! - Delivery costs per batch, not per event and subscriber. The hub puts what one read of
//!   the store found in the ring as one batch (at most [`BATCH`] events); each event is
//!   decoded once into an `Arc` that every subscriber hands out as it is, and encoded once
//!   per wire encoding ([`SharedEvent::encoded`]), the bytes shared by every stream. Under
//!   load the hub reads the store at most once per [`COALESCE`], so a burst of writes makes
//!   one batch and each subscriber wakes once for it and takes every batch waiting in the
//!   ring in one go; after a quiet moment it reads at once, so an idle feed adds no delay.
//! - A subscriber that watches one user follows that user's own small ring instead of the
//!   shared one, so an event wakes only the subscribers of all events and those of its user:
//!   a thousand per-user watchers cost a write about what one does.
//! - The subscriber count is bounded (`--feed-max-subscribers`). On shutdown, or when the
//!   last handle of the hub is dropped, every stream yields `FEED_SHUTDOWN` and ends.
//!
//! Who may see which events is the core's rule (`core::events`), not the hub's.

mod subscription;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{OnceCell, broadcast, watch};

use crate::domain::{
    Clock, Error, ErrorKind, FeedPosition, SessionEvent, SessionEventType, TerminationReason,
    error_ids,
};
use crate::store::{DynStore, FeedQuery, FeedRow};

pub use subscription::EventStream;

/// Events the hub reads from the store at once.
const HUB_PAGE: u32 = 1000;
/// Batches a per-user ring holds (at most the shared ring's size). A subscriber further
/// behind on its own user reads the store, as on the shared ring.
const USER_RING: usize = 64;
/// How soon the hub looks again when committed events wait for an older transaction, at
/// first and at most.
const HELD_BACK_FIRST_RETRY: Duration = Duration::from_millis(2);
const HELD_BACK_LAST_RETRY: Duration = Duration::from_millis(100);
/// Most events in one batch of the ring.
const BATCH: usize = 64;
/// The ring counts batches, not events: it holds `--feed-buffer / EVENTS_PER_SLOT` of them.
/// Under load a batch holds many events, when quiet one or a few; a ring of `--feed-buffer`
/// events' worth of slots on average, and never more than `BATCH / EVENTS_PER_SLOT` times it.
const EVENTS_PER_SLOT: usize = 8;
/// Least time between two reads of the store by the hub while events keep coming.
const COALESCE: Duration = Duration::from_millis(2);

/// The hub's settings.
#[derive(Clone, Debug)]
pub struct FeedSettings {
    /// Events the in-memory ring holds.
    pub buffer: usize,
    /// Longest time between two reads of the store without a wake-up.
    pub poll_interval: Duration,
    /// Subscribers at once on this process.
    pub max_subscribers: usize,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            buffer: 4096,
            poll_interval: Duration::from_secs(1),
            max_subscribers: 10_000,
        }
    }
}

/// The feed's metrics, registered by `ops::metrics`.
#[derive(Clone, Debug)]
pub struct FeedMetrics {
    pub subscribers: Gauge,
    pub delivered: Counter,
    /// From the event's time to its hand-off to a subscriber: one observation per
    /// subscriber and wake-up, of the first event it then hands off (the oldest).
    pub lag: Histogram,
    /// Reads of the store repeated soon because committed events waited for an older
    /// transaction (PostgreSQL's visibility horizon).
    pub held_back_polls: Counter,
}

impl Default for FeedMetrics {
    fn default() -> Self {
        Self {
            subscribers: Gauge::default(),
            delivered: Counter::default(),
            lag: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            held_back_polls: Counter::default(),
        }
    }
}

/// An event as every subscriber hands it out: decoded once, each wire encoding made once.
#[derive(Debug)]
pub struct SharedEvent {
    event: SessionEvent,
    encoded: [OnceLock<Bytes>; Encoding::COUNT],
}

/// The wire encodings of an event that the faces share between streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// A Server-Sent Events frame.
    Sse,
    /// A Connect streaming envelope of the JSON message.
    ConnectJson,
    /// A Connect streaming envelope of the protobuf message.
    ConnectProto,
}

impl Encoding {
    const COUNT: usize = 3;
}

impl SharedEvent {
    pub fn new(event: SessionEvent) -> Arc<Self> {
        Arc::new(Self {
            event,
            encoded: Default::default(),
        })
    }

    /// The event in `encoding`, made by `encode` the first time any stream asks.
    pub fn encoded<E>(
        &self,
        encoding: Encoding,
        encode: impl FnOnce(&SessionEvent) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let slot = &self.encoded[encoding as usize];
        if let Some(bytes) = slot.get() {
            return Ok(bytes.clone());
        }
        let bytes = encode(&self.event)?;
        Ok(slot.get_or_init(|| bytes).clone())
    }
}

impl std::ops::Deref for SharedEvent {
    type Target = SessionEvent;

    fn deref(&self) -> &SessionEvent {
        &self.event
    }
}

/// An event as the ring carries it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub position: FeedPosition,
    pub event: Arc<SharedEvent>,
}

/// Events the hub found in one read, in position order, shared by every ring slot.
pub type Batch = Arc<[Delivered]>;

/// The ring's size in batches for a buffer of `events`.
fn batches(events: usize) -> usize {
    (events / EVENTS_PER_SLOT).max(1)
}

/// What the hub and its subscribers share.
struct Shared {
    store: DynStore,
    clock: Arc<dyn Clock>,
    settings: FeedSettings,
    /// The ring of the subscribers of every user's events.
    ring: broadcast::Sender<Batch>,
    /// The rings of the subscribers of one user's events, by user id; a ring goes when its
    /// last subscriber does.
    user_rings: Mutex<HashMap<String, broadcast::Sender<Batch>>>,
    /// Events subscribers have taken from a ring, whether their selection kept them or not:
    /// how much waking the fan-out costs.
    ring_receipts: AtomicU64,
    subscribers: AtomicUsize,
    /// Set on shutdown: every stream ends.
    shutdown: watch::Sender<bool>,
    metrics: FeedMetrics,
}

impl Shared {
    fn user_rings(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Batch>>> {
        // The map stays whole whatever panicked while holding it: each step leaves it valid.
        self.user_rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle to the hub. The hub task starts with the first subscriber and stops, ending every
/// stream, when the last handle is dropped or on [`Feed::shutdown`].
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    started: OnceCell<()>,
    /// Dropped with the last handle: the hub task sees it and stops.
    _alive: watch::Sender<()>,
    alive: watch::Receiver<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

impl Feed {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, settings: FeedSettings) -> Self {
        let (ring, _) = broadcast::channel(batches(settings.buffer));
        let (alive_tx, alive) = watch::channel(());
        Self {
            inner: Arc::new(Handle {
                shared: Arc::new(Shared {
                    store,
                    clock,
                    settings,
                    ring,
                    user_rings: Mutex::new(HashMap::new()),
                    ring_receipts: AtomicU64::new(0),
                    subscribers: AtomicUsize::new(0),
                    shutdown: watch::Sender::new(false),
                    metrics: FeedMetrics::default(),
                }),
                started: OnceCell::new(),
                _alive: alive_tx,
                alive,
            }),
        }
    }

    pub fn metrics(&self) -> &FeedMetrics {
        &self.inner.shared.metrics
    }

    /// Subscribers right now.
    pub fn subscribers(&self) -> usize {
        self.inner.shared.subscribers.load(Ordering::Relaxed)
    }

    /// Events subscribers of this process have taken from a ring so far, kept by their
    /// selection or not: each one is a wake-up of a subscriber.
    pub fn ring_receipts(&self) -> u64 {
        self.inner.shared.ring_receipts.load(Ordering::Relaxed)
    }

    /// Ends every stream with `FEED_SHUTDOWN`; later subscriptions are refused the same way.
    pub fn shutdown(&self) {
        self.inner.shared.shutdown.send_replace(true);
    }

    /// Starts the hub task once: its starting position is read before any subscriber joins
    /// the ring, so a subscriber's catch-up from the store always reaches it.
    async fn start(&self) -> Result<(), Error> {
        self.inner
            .started
            .get_or_try_init(|| async {
                let head = self.inner.shared.store.feed_bounds().await?.head;
                let shared = Arc::downgrade(&self.inner.shared);
                let wake = self.inner.shared.store.feed_wake().subscribe();
                tokio::spawn(run_hub(shared, head, wake, self.inner.alive.clone()));
                Ok::<_, Error>(())
            })
            .await
            .map(|_| ())
    }
}

/// The hub: reads what is new after `cursor` whenever woken or polled, and puts it in the ring.
async fn run_hub(
    shared: Weak<Shared>,
    mut cursor: FeedPosition,
    mut wake: watch::Receiver<u64>,
    mut alive: watch::Receiver<()>,
) {
    let mut retry = HELD_BACK_FIRST_RETRY;
    loop {
        let Some(hub) = shared.upgrade() else { return };
        wake.mark_unchanged();
        let mut poll = hub.settings.poll_interval;
        let read_at = tokio::time::Instant::now();
        let mut published = false;
        match drain(&hub, cursor).await {
            Ok(drained) => {
                cursor = drained.cursor;
                published = drained.published;
                if drained.held_back {
                    // Events wait for an older transaction: look again soon, then less often.
                    hub.metrics.held_back_polls.inc();
                    poll = poll.min(retry);
                    retry = (retry * 2).min(HELD_BACK_LAST_RETRY);
                } else {
                    retry = HELD_BACK_FIRST_RETRY;
                }
            }
            Err(e) => {
                tracing::warn!(error = ?e, "the event feed could not read the store; retrying")
            }
        }
        drop(hub);
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    // The store is gone; only polling is left.
                    tokio::time::sleep(poll).await;
                } else if published {
                    // Events keep coming: gather what the next moment brings into one batch.
                    tokio::time::sleep_until(read_at + COALESCE).await;
                }
            }
            () = tokio::time::sleep(poll) => {}
            _ = alive.changed() => return,
        }
    }
}

/// What one [`drain`] did.
struct Drained {
    /// Every event up to here is in the ring.
    cursor: FeedPosition,
    /// Committed events wait past the cursor.
    held_back: bool,
    /// Some event went into the ring.
    published: bool,
}

/// Puts every event after `cursor` in the ring, in batches.
async fn drain(hub: &Shared, mut cursor: FeedPosition) -> Result<Drained, Error> {
    let mut published = false;
    loop {
        let page = hub
            .store
            .feed_events(&FeedQuery {
                after: cursor,
                user_id: None,
                types: Vec::new(),
                limit: HUB_PAGE,
            })
            .await?;
        let full = page.rows.len() >= HUB_PAGE as usize;
        let delivered: Vec<Delivered> = page
            .rows
            .into_iter()
            .filter_map(|row| {
                let position = row.position;
                event_of(row).map(|event| Delivered {
                    position,
                    event: SharedEvent::new(event),
                })
            })
            .collect();
        published |= !delivered.is_empty();
        publish(hub, &delivered);
        cursor = page.scanned_to.max(cursor);
        if !full {
            return Ok(Drained {
                cursor,
                held_back: page.held_back,
                published,
            });
        }
    }
}

/// Sends `events` to the shared ring, and each user's to that user's ring if it has one.
fn publish(hub: &Shared, events: &[Delivered]) {
    let user_rings = hub.user_rings();
    for chunk in events.chunks(BATCH) {
        if !user_rings.is_empty() {
            let mut by_user: HashMap<&str, Vec<Delivered>> = HashMap::new();
            for item in chunk {
                if let Some(user) = item.event.user_id.as_deref()
                    && user_rings.contains_key(user)
                {
                    by_user.entry(user).or_default().push(item.clone());
                }
            }
            for (user, items) in by_user {
                if let Some(ring) = user_rings.get(user) {
                    let _ = ring.send(items.into());
                }
            }
        }
        // No receiver is fine: nobody is listening right now.
        let _ = hub.ring.send(chunk.into());
    }
}

/// A stored event as the feed shows it; `None` for a type the feed does not know.
pub fn event_of(row: FeedRow) -> Option<SessionEvent> {
    let event_type = SessionEventType::parse(&row.event_type)?;
    let reason = match event_type {
        SessionEventType::Terminated => row
            .payload
            .get("reason")
            .and_then(|r| r.as_str())
            .and_then(TerminationReason::from_stored),
        _ => None,
    };
    Some(SessionEvent {
        cursor: row.position.to_string(),
        session_id: row.session_id,
        user_id: row.user_id,
        event_type,
        sequence: row.sequence,
        occurred_at: row.created_at,
        resource_owner: row.resource_owner,
        reason,
    })
}

/// What a reader of the feed wants, checked and resolved by the core.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub user_id: Option<String>,
    pub types: Vec<SessionEventType>,
}

impl Selection {
    fn matches(&self, event: &SessionEvent) -> bool {
        self.user_id
            .as_ref()
            .is_none_or(|u| event.user_id.as_ref() == Some(u))
            && (self.types.is_empty() || self.types.contains(&event.event_type))
    }
}

/// One page of events after `after` (see [`read_page`]).
pub struct Page {
    pub events: Vec<SessionEvent>,
    /// Everything up to here has been looked at.
    pub scanned_to: FeedPosition,
    /// The store had more than the page: read again from `scanned_to`.
    pub full: bool,
}

/// Reads a page of events after `after` from the store. `after` past the head of the log is a
/// cursor never issued (`FEED_CURSOR_INVALID`); below the retention horizon (but not the
/// start) it may have missed pruned events (`FEED_CURSOR_EXPIRED`).
pub async fn read_page(
    store: &DynStore,
    after: FeedPosition,
    selection: &Selection,
    limit: u32,
) -> Result<Page, Error> {
    let page = store
        .feed_events(&FeedQuery {
            after,
            user_id: selection.user_id.clone(),
            types: selection.types.clone(),
            limit,
        })
        .await?;
    if after > page.head.max(page.horizon) {
        return Err(cursor_invalid());
    }
    if after != FeedPosition::START && after < page.horizon {
        return Err(cursor_expired());
    }
    Ok(Page {
        full: page.rows.len() >= usize::try_from(limit).unwrap_or(usize::MAX),
        events: page.rows.into_iter().filter_map(event_of).collect(),
        scanned_to: page.scanned_to,
    })
}

pub fn cursor_invalid() -> Error {
    Error::invalid_argument(
        error_ids::FEED_CURSOR_INVALID,
        "the cursor is not one this server issued",
    )
}

fn cursor_expired() -> Error {
    Error::failed_precondition(
        error_ids::FEED_CURSOR_EXPIRED,
        "the cursor is older than the oldest retained event; resync: list the sessions again \
         and watch from now",
    )
}

fn shutting_down() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        error_ids::FEED_SHUTDOWN,
        "the server is shutting down; reconnect with the last cursor",
    )
}

fn subscribers_full() -> Error {
    Error::new(
        ErrorKind::ResourceExhausted,
        error_ids::FEED_SUBSCRIBERS_FULL,
        "too many event feed subscribers on this server; retry later",
    )
}
