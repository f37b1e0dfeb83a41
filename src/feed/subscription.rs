//! One subscriber's stream: catch up from the store, then follow the ring; back to the store
//! whenever the ring says the subscriber fell behind it.
//!
//! `cursor` is the position up to which every event has been looked at (delivered, or skipped
//! by the subscriber's selection). The store gives events after it; the ring may repeat
//! events up to it (the subscriber joined the ring before reading the store), which are
//! skipped. So each event is delivered once, in position order, without a gap.
//!
//! The stream yields [`Events`]: a batch of the ring (or a page of the store) at a time, not
//! one event at a time, so what a subscriber costs grows with the batches, not the events.
//! A subscriber woken by the ring takes every batch waiting in it before it waits again, and
//! counts its deliveries and their lag once per wake-up. [`EventStream`] is the same stream
//! one event at a time, for callers that handle events singly.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};

use super::{
    Batch, Events, Feed, Selection, Shared, SharedEvent, USER_RING, batches, read_page,
    shutting_down, subscribers_full,
};
use crate::domain::{Error, FeedPosition};

/// A live stream of events, a batch at a time; ends after an error.
pub type EventBatches = Pin<Box<dyn Stream<Item = Result<Events, Error>> + Send>>;

/// A live stream of events, one at a time; ends after an error.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Arc<SharedEvent>, Error>> + Send>>;

/// `batches` one event at a time.
pub fn one_by_one(batches: EventBatches) -> EventStream {
    Box::pin(batches.flat_map(|item| {
        let items: Vec<Result<Arc<SharedEvent>, Error>> = match item {
            Ok(events) => events.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        };
        futures_util::stream::iter(items)
    }))
}

/// Events read from the store at once while catching up.
const CATCH_UP_PAGE: u32 = 500;

/// Where the subscription is.
enum Mode {
    /// Reading the store by cursor.
    CatchUp,
    /// Following the ring.
    Live,
    /// Done: the stream ends.
    Ended,
}

/// A place among the subscribers, given back when the stream is dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.subscribers.dec();
    }
}

/// The ring a subscriber follows: the shared one, or that of the one user it watches, which
/// goes when its last subscriber does.
struct Ring {
    receiver: broadcast::Receiver<Arc<Batch>>,
    user: Option<String>,
    shared: Arc<Shared>,
}

impl Ring {
    fn join(shared: &Arc<Shared>, selection: &Selection) -> Self {
        let receiver = match &selection.user_id {
            None => shared.ring.subscribe(),
            Some(user) => shared
                .user_rings()
                .entry(user.clone())
                .or_insert_with(|| {
                    broadcast::channel(USER_RING.min(batches(shared.settings.buffer))).0
                })
                .subscribe(),
        };
        Self {
            receiver,
            user: selection.user_id.clone(),
            shared: shared.clone(),
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let Some(user) = &self.user else { return };
        // Subscribers join under this lock, so no one can join between the count and the
        // removal; the receiver still open here is this one.
        let mut rings = self.shared.user_rings();
        if rings
            .get(user)
            .is_some_and(|ring| ring.receiver_count() <= 1)
        {
            rings.remove(user);
        }
    }
}

struct Subscription {
    slot: Slot,
    ring: Ring,
    shutdown: watch::Receiver<bool>,
    selection: Selection,
    cursor: FeedPosition,
    /// Events read from the store, not handed out yet.
    pending: Option<Events>,
    /// Events handed out since the metric was last told.
    delivered: u64,
    /// The next events handed out are the first since a wake-up: their lag is observed.
    observe_lag: bool,
    mode: Mode,
}

impl Feed {
    /// A stream of the events after `after` (`None`: from the head of the log, i.e. now)
    /// that match `selection`, a batch at a time.
    pub async fn subscribe(
        &self,
        after: Option<FeedPosition>,
        selection: Selection,
    ) -> Result<EventBatches, Error> {
        let shared = &self.inner.shared;
        if *shared.shutdown.borrow() {
            return Err(shutting_down());
        }
        let taken = shared.subscribers.fetch_add(1, Ordering::Relaxed);
        shared.metrics.subscribers.inc();
        let slot = Slot(shared.clone());
        if taken >= shared.settings.max_subscribers {
            return Err(subscribers_full());
        }
        self.start().await?;
        // Join the ring before reading the store: nothing falls between the two.
        let ring = Ring::join(shared, &selection);
        let mut sub = Subscription {
            slot,
            ring,
            shutdown: shared.shutdown.subscribe(),
            selection,
            cursor: FeedPosition::START,
            pending: None,
            delivered: 0,
            observe_lag: true,
            mode: Mode::CatchUp,
        };
        match after {
            Some(after) => {
                // Refuse a bad cursor now, as an error of the call, not of the stream.
                let first = read_page(&shared.store, after, &sub.selection, CATCH_UP_PAGE).await?;
                sub.cursor = first.scanned_to.max(after);
                if !first.full {
                    sub.mode = Mode::Live;
                }
                sub.pending = Events::whole(first.into_batch());
            }
            None => sub.cursor = shared.store.feed_bounds().await?.head,
        }
        Ok(Box::pin(sub.into_stream()))
    }
}

impl Subscription {
    fn into_stream(self) -> impl Stream<Item = Result<Events, Error>> + Send {
        futures_util::stream::unfold(self, |mut sub| async move {
            let item = sub.next().await?;
            Some((item, sub))
        })
    }

    fn shared(&self) -> &Shared {
        &self.slot.0
    }

    /// The next events, or `None` once ended.
    async fn next(&mut self) -> Option<Result<Events, Error>> {
        loop {
            if matches!(self.mode, Mode::Ended) {
                return None;
            }
            if *self.shutdown.borrow() {
                return Some(self.end(shutting_down()));
            }
            if let Some(events) = self.pending.take() {
                return Some(Ok(self.hand_off(events)));
            }
            match self.mode {
                Mode::CatchUp => {
                    if let Err(e) = self.catch_up().await {
                        return Some(self.end(e));
                    }
                    self.observe_lag = true;
                }
                Mode::Live => {
                    // Take the next batch waiting, else wait for one.
                    let received = match self.ring.receiver.try_recv() {
                        Err(broadcast::error::TryRecvError::Empty) => {
                            self.flush_delivered();
                            let received = tokio::select! {
                                _ = self.shutdown.changed() => continue,
                                received = self.ring.receiver.recv() => received,
                            };
                            self.observe_lag = true;
                            received
                        }
                        Ok(batch) => Ok(batch),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            Err(broadcast::error::RecvError::Lagged(n))
                        }
                        Err(broadcast::error::TryRecvError::Closed) => {
                            Err(broadcast::error::RecvError::Closed)
                        }
                    };
                    match received {
                        Ok(batch) => {
                            self.shared()
                                .ring_receipts
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            if let Some(events) = self.past_cursor(batch) {
                                return Some(Ok(self.hand_off(events)));
                            }
                        }
                        // Fell behind the ring: the store has everything after the cursor.
                        Err(broadcast::error::RecvError::Lagged(_)) => self.mode = Mode::CatchUp,
                        Err(broadcast::error::RecvError::Closed) => {
                            return Some(self.end(shutting_down()));
                        }
                    }
                }
                Mode::Ended => return None,
            }
        }
    }

    /// The events of a batch of the ring past the cursor that the selection keeps; the cursor
    /// moves past the whole batch.
    fn past_cursor(&mut self, batch: Arc<Batch>) -> Option<Events> {
        let last = batch.items.last()?.position;
        if last <= self.cursor {
            return None;
        }
        // Positions rise through a batch: only the first batches after a catch-up start at
        // or below the cursor.
        let from = batch
            .items
            .partition_point(|item| item.position <= self.cursor);
        self.cursor = last;
        Events::select(batch, from, &self.selection)
    }

    /// One page from the store after the cursor; live again once the store has no more.
    async fn catch_up(&mut self) -> Result<(), Error> {
        let page = read_page(
            &self.shared().store,
            self.cursor,
            &self.selection,
            CATCH_UP_PAGE,
        )
        .await?;
        if !page.full {
            self.mode = Mode::Live;
        }
        self.cursor = page.scanned_to.max(self.cursor);
        self.pending = Events::whole(page.into_batch());
        Ok(())
    }

    fn hand_off(&mut self, events: Events) -> Events {
        if self.observe_lag {
            self.observe_lag = false;
            let shared = self.shared();
            let lag_micros =
                shared.clock.now().unix_micros() - events.first().occurred_at.unix_micros();
            shared
                .metrics
                .lag
                .observe(lag_micros.max(0) as f64 / 1_000_000.0);
        }
        self.delivered += events.len() as u64;
        events
    }

    /// Tells the metric the deliveries counted so far.
    fn flush_delivered(&mut self) {
        if self.delivered > 0 {
            self.shared().metrics.delivered.inc_by(self.delivered);
            self.delivered = 0;
        }
    }

    fn end(&mut self, error: Error) -> Result<Events, Error> {
        self.flush_delivered();
        self.mode = Mode::Ended;
        Err(error)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.flush_delivered();
    }
}
