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
//!   decoded once into an `Arc`, and encoded once per wire encoding
//!   ([`SharedEvent::encoded`]). A subscriber takes a whole batch at a time ([`Events`]):
//!   when its selection keeps every event of the batch (the common case: no type filter, or
//!   one that covers the batch's types), it holds the batch itself, without a per-event step,
//!   and a face writes the batch's shared encoding ([`Events::encoded`]: every event's
//!   frames in one buffer, made once for all streams) as one write.
//! - Under load the hub reads the store at most once per coalescing interval, which grows
//!   with the number of subscribers ([`coalesce`]): a burst of writes makes one batch and each
//!   subscriber wakes once for it, so the wake-ups per second stay about the same whatever the
//!   number of subscribers, within the latency budget. After a quiet moment the hub reads at
//!   once, so an idle feed adds no delay.
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

pub use subscription::{EventBatches, EventStream, one_by_one};

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
/// What each subscriber adds to that time: a wake-up of every subscriber per read costs
/// about a microsecond each, so reads that wake `n` subscribers come at most about once per
/// `n` times this while events keep coming.
const COALESCE_PER_SUBSCRIBER: Duration = Duration::from_micros(10);
/// The longest coalescing interval, well within the feed's latency budget (50 ms at p99).
const COALESCE_MAX: Duration = Duration::from_millis(25);

/// Least time between two reads of the store while events keep coming, with `subscribers`.
fn coalesce(subscribers: usize) -> Duration {
    let n = u32::try_from(subscribers).unwrap_or(u32::MAX);
    COALESCE
        .saturating_add(COALESCE_PER_SUBSCRIBER.saturating_mul(n))
        .min(COALESCE_MAX)
}

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

/// Events in position order, as the hub found them in one read of the store (shared by
/// every subscriber of a ring) or a subscriber in one page of its catch-up.
#[derive(Debug)]
pub struct Batch {
    items: Box<[Delivered]>,
    /// The event types in the batch, one bit each ([`type_bit`]).
    types: u8,
    /// Every event's frame in one buffer, by encoding, made the first time a stream asks.
    encoded: [OnceLock<Bytes>; Encoding::COUNT],
}

impl Batch {
    fn new(items: Vec<Delivered>) -> Arc<Self> {
        let types = items
            .iter()
            .fold(0, |mask, item| mask | type_bit(item.event.event_type));
        Arc::new(Self {
            items: items.into(),
            types,
            encoded: Default::default(),
        })
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

fn type_bit(event_type: SessionEventType) -> u8 {
    match event_type {
        SessionEventType::Added => 1,
        SessionEventType::Updated => 2,
        SessionEventType::Terminated => 4,
    }
}

/// Events of one batch that a subscriber hands out at once, in position order (never
/// empty). Holding it costs one `Arc` of the batch, whatever the number of events.
#[derive(Clone, Debug)]
pub struct Events {
    batch: Arc<Batch>,
    kept: Kept,
}

/// Which events of the batch a subscriber keeps.
#[derive(Clone, Debug)]
enum Kept {
    /// Every event of this range.
    Range(std::ops::Range<usize>),
    /// These, by index.
    Only(Vec<u32>),
}

impl Events {
    /// The events of `batch` from `from` on that `selection` keeps, if any.
    fn select(batch: Arc<Batch>, from: usize, selection: &Selection) -> Option<Self> {
        if from >= batch.len() {
            return None;
        }
        let kept = if selection.keeps_all(&batch) {
            Kept::Range(from..batch.len())
        } else {
            let only: Vec<u32> = (from..batch.len())
                .filter(|&i| selection.matches(&batch.items[i].event))
                .map(|i| i as u32)
                .collect();
            if only.is_empty() {
                return None;
            }
            Kept::Only(only)
        };
        Some(Self { batch, kept })
    }

    /// Events read from the store, every one kept.
    fn whole(batch: Arc<Batch>) -> Option<Self> {
        (batch.len() > 0).then(|| Self {
            kept: Kept::Range(0..batch.len()),
            batch,
        })
    }

    pub fn len(&self) -> usize {
        match &self.kept {
            Kept::Range(range) => range.len(),
            Kept::Only(only) => only.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events, in position order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<SharedEvent>> + '_ {
        let items = &self.batch.items;
        let (all, only): (&[Delivered], &[u32]) = match &self.kept {
            Kept::Range(range) => (&items[range.clone()], &[]),
            Kept::Only(only) => (&[], only),
        };
        all.iter()
            .chain(only.iter().map(|&i| &items[i as usize]))
            .map(|item| &item.event)
    }

    /// The first event (the oldest).
    fn first(&self) -> &SharedEvent {
        let index = match &self.kept {
            Kept::Range(range) => range.start,
            Kept::Only(only) => only[0] as usize,
        };
        &self.batch.items[index].event
    }

    /// Every event's frame in `encoding`, one after the other in one buffer; `encode` makes
    /// an event's frame the first time any stream asks for it. When these are the whole
    /// batch, the buffer is made once and shared by every stream that holds the batch.
    pub fn encoded<E>(
        &self,
        encoding: Encoding,
        encode: impl Fn(&SessionEvent) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let frames = || -> Result<Bytes, E> {
            let mut frames = self
                .iter()
                .map(|event| event.encoded(encoding, &encode))
                .collect::<Result<Vec<Bytes>, E>>()?;
            if frames.len() == 1 {
                return Ok(frames.pop().unwrap_or_default());
            }
            let mut buffer = bytes::BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
            for frame in &frames {
                buffer.extend_from_slice(frame);
            }
            Ok(buffer.freeze())
        };
        if !matches!(&self.kept, Kept::Range(range) if range.len() == self.batch.len()) {
            return frames();
        }
        let slot = &self.batch.encoded[encoding as usize];
        if let Some(bytes) = slot.get() {
            return Ok(bytes.clone());
        }
        let bytes = frames()?;
        Ok(slot.get_or_init(|| bytes).clone())
    }
}

impl Events {
    /// These events up to and with the first that `last` picks, and whether one did.
    pub fn until(self, last: impl Fn(&SessionEvent) -> bool) -> (Self, bool) {
        let Some(at) = self.iter().position(|event| last(event)) else {
            return (self, false);
        };
        let kept = match self.kept {
            Kept::Range(range) => Kept::Range(range.start..range.start + at + 1),
            Kept::Only(mut only) => {
                only.truncate(at + 1);
                Kept::Only(only)
            }
        };
        (
            Self {
                batch: self.batch,
                kept,
            },
            true,
        )
    }
}

impl IntoIterator for Events {
    type Item = Arc<SharedEvent>;
    type IntoIter = std::vec::IntoIter<Arc<SharedEvent>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter().cloned().collect::<Vec<_>>().into_iter()
    }
}

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
    ring: broadcast::Sender<Arc<Batch>>,
    /// The rings of the subscribers of one user's events, by user id; a ring goes when its
    /// last subscriber does.
    user_rings: Mutex<HashMap<String, broadcast::Sender<Arc<Batch>>>>,
    /// Events subscribers have taken from a ring, whether their selection kept them or not:
    /// how much waking the fan-out costs.
    ring_receipts: AtomicU64,
    subscribers: AtomicUsize,
    /// Set on shutdown: every stream ends.
    shutdown: watch::Sender<bool>,
    metrics: FeedMetrics,
}

impl Shared {
    fn user_rings(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<Batch>>>> {
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
                    // Events keep coming: gather what the next moment brings into one batch,
                    // a longer moment the more subscribers each batch wakes.
                    let subscribers = shared
                        .upgrade()
                        .map_or(0, |hub| hub.subscribers.load(Ordering::Relaxed));
                    tokio::time::sleep_until(read_at + coalesce(subscribers)).await;
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
                    let _ = ring.send(Batch::new(items));
                }
            }
        }
        // No receiver is fine: nobody is listening right now.
        let _ = hub.ring.send(Batch::new(chunk.to_vec()));
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

    /// Whether every event of `batch` is kept, known without looking at each: the batch
    /// comes from the ring this selection follows (every user's, or this user's own), so
    /// only the types can leave an event out.
    fn keeps_all(&self, batch: &Batch) -> bool {
        let wanted = if self.types.is_empty() {
            u8::MAX
        } else {
            self.types.iter().fold(0, |mask, t| mask | type_bit(*t))
        };
        batch.types & !wanted == 0
    }
}

/// One page of events after `after` (see [`read_page`]).
pub struct Page {
    pub events: Vec<SessionEvent>,
    /// Each event's position, in the order of `events`.
    positions: Vec<FeedPosition>,
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
    let full = page.rows.len() >= usize::try_from(limit).unwrap_or(usize::MAX);
    let (positions, events) = page
        .rows
        .into_iter()
        .filter_map(|row| {
            let position = row.position;
            event_of(row).map(|event| (position, event))
        })
        .unzip();
    Ok(Page {
        full,
        events,
        positions,
        scanned_to: page.scanned_to,
    })
}

impl Page {
    /// The events as one batch of a subscriber's own.
    fn into_batch(self) -> Arc<Batch> {
        Batch::new(
            self.positions
                .into_iter()
                .zip(self.events)
                .map(|(position, event)| Delivered {
                    position,
                    event: SharedEvent::new(event),
                })
                .collect(),
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Time;

    fn item(n: u64, event_type: SessionEventType) -> Delivered {
        Delivered {
            position: FeedPosition::new(0, n),
            event: SharedEvent::new(SessionEvent {
                cursor: n.to_string(),
                session_id: format!("s{n}"),
                user_id: Some("u".into()),
                event_type,
                sequence: 1,
                occurred_at: Time::from_unix_parts(1_700_000_000, 0),
                resource_owner: "o".into(),
                reason: None,
            }),
        }
    }

    fn frame(event: &SessionEvent) -> Result<Bytes, std::convert::Infallible> {
        Ok(Bytes::from(format!("{};", event.cursor)))
    }

    fn cursors(events: &Events) -> Vec<String> {
        events.iter().map(|e| e.cursor.clone()).collect()
    }

    fn mixed() -> Arc<Batch> {
        use SessionEventType::{Added, Terminated, Updated};
        Batch::new(vec![
            item(1, Added),
            item(2, Terminated),
            item(3, Updated),
            item(4, Terminated),
        ])
    }

    #[test]
    fn a_selection_that_covers_the_batch_holds_it_whole_and_shares_its_encoding() {
        let batch = mixed();
        let a = Events::select(batch.clone(), 0, &Selection::default()).unwrap();
        let b = Events::select(batch.clone(), 0, &Selection::default()).unwrap();
        assert_eq!(cursors(&a), ["1", "2", "3", "4"]);
        let first = a.encoded(Encoding::Sse, frame).unwrap();
        assert_eq!(&first[..], b"1;2;3;4;");
        let second = b.encoded(Encoding::Sse, frame).unwrap();
        // The same buffer, not a copy.
        assert_eq!(first.as_ptr(), second.as_ptr());
    }

    #[test]
    fn a_type_filter_keeps_only_its_types_and_encodes_only_them() {
        let selection = Selection {
            user_id: None,
            types: vec![SessionEventType::Terminated],
        };
        let events = Events::select(mixed(), 0, &selection).unwrap();
        assert_eq!(cursors(&events), ["2", "4"]);
        assert_eq!(&events.encoded(Encoding::Sse, frame).unwrap()[..], b"2;4;");
        let late = Events::select(mixed(), 2, &selection).unwrap();
        assert_eq!(cursors(&late), ["4"]);
        let added = Selection {
            user_id: None,
            types: vec![SessionEventType::Added],
        };
        assert!(Events::select(mixed(), 1, &added).is_none());
    }

    #[test]
    fn events_past_the_start_of_a_batch_are_encoded_alone() {
        let events = Events::select(mixed(), 2, &Selection::default()).unwrap();
        assert_eq!(cursors(&events), ["3", "4"]);
        assert_eq!(&events.encoded(Encoding::Sse, frame).unwrap()[..], b"3;4;");
        // The whole batch's shared encoding is still the whole batch.
        let whole = Events::whole(events.batch.clone()).unwrap();
        assert_eq!(
            &whole.encoded(Encoding::Sse, frame).unwrap()[..],
            b"1;2;3;4;"
        );
    }

    #[test]
    fn until_keeps_the_events_up_to_and_with_the_one_picked() {
        let whole = Events::whole(mixed()).unwrap();
        let (cut, found) = whole.until(|e| e.session_id == "s2");
        assert!(found);
        assert_eq!(cursors(&cut), ["1", "2"]);
        assert_eq!(&cut.encoded(Encoding::Sse, frame).unwrap()[..], b"1;2;");
        let (all, found) = Events::whole(mixed()).unwrap().until(|_| false);
        assert!(!found);
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn the_coalescing_interval_grows_with_subscribers_within_its_bounds() {
        assert_eq!(coalesce(0), COALESCE);
        assert!(coalesce(1000) > coalesce(1));
        assert_eq!(coalesce(usize::MAX), COALESCE_MAX);
    }
}
