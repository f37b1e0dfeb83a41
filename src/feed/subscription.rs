//! One subscriber's stream: catch up from the store, then follow the ring; back to the store
//! whenever the ring says the subscriber fell behind it.
//!
//! `cursor` is the position up to which every event has been looked at (delivered, or skipped
//! by the subscriber's selection). The store gives events after it; the ring may repeat
//! events up to it (the subscriber joined the ring before reading the store), which are
//! skipped. So each event is delivered once, in position order, without a gap.
//!
//! The ring brings batches. A subscriber woken by one takes every batch waiting in the ring
//! before it waits again, hands out the events as the hub decoded them (shared, not copied),
//! and counts its deliveries and their lag once per wake-up rather than per event.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::Stream;
use tokio::sync::{broadcast, watch};

use super::{
    Batch, Feed, Selection, Shared, SharedEvent, USER_RING, batches, read_page, shutting_down,
    subscribers_full,
};
use crate::domain::{Error, FeedPosition};

/// A live stream of events; ends after an error.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Arc<SharedEvent>, Error>> + Send>>;

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
    receiver: broadcast::Receiver<Batch>,
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
    pending: VecDeque<Arc<SharedEvent>>,
    /// The batch taken from the ring, and how far into it the subscriber is.
    batch: Option<(Batch, usize)>,
    /// Events handed out since the metric was last told.
    delivered: u64,
    /// The next event handed out is the first since a wake-up: its lag is observed.
    observe_lag: bool,
    mode: Mode,
}

impl Feed {
    /// A stream of the events after `after` (`None`: from the head of the log, i.e. now)
    /// that match `selection`.
    pub async fn subscribe(
        &self,
        after: Option<FeedPosition>,
        selection: Selection,
    ) -> Result<EventStream, Error> {
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
        let cursor = match after {
            Some(after) => {
                // Refuse a bad cursor now, as an error of the call, not of the stream.
                let first = read_page(&shared.store, after, &selection, CATCH_UP_PAGE).await?;
                let sub = Subscription {
                    slot,
                    ring,
                    shutdown: shared.shutdown.subscribe(),
                    selection,
                    cursor: first.scanned_to.max(after),
                    pending: first.events.into_iter().map(SharedEvent::new).collect(),
                    batch: None,
                    delivered: 0,
                    observe_lag: true,
                    mode: if first.full {
                        Mode::CatchUp
                    } else {
                        Mode::Live
                    },
                };
                return Ok(Box::pin(sub.into_stream()));
            }
            None => shared.store.feed_bounds().await?.head,
        };
        let sub = Subscription {
            slot,
            ring,
            shutdown: shared.shutdown.subscribe(),
            selection,
            cursor,
            pending: VecDeque::new(),
            batch: None,
            delivered: 0,
            observe_lag: true,
            mode: Mode::CatchUp,
        };
        Ok(Box::pin(sub.into_stream()))
    }
}

impl Subscription {
    fn into_stream(self) -> impl Stream<Item = Result<Arc<SharedEvent>, Error>> + Send {
        futures_util::stream::unfold(self, |mut sub| async move {
            let item = sub.next().await?;
            Some((item, sub))
        })
    }

    fn shared(&self) -> &Shared {
        &self.slot.0
    }

    /// The next item, or `None` once ended.
    async fn next(&mut self) -> Option<Result<Arc<SharedEvent>, Error>> {
        loop {
            if matches!(self.mode, Mode::Ended) {
                return None;
            }
            if *self.shutdown.borrow() {
                return Some(self.end(shutting_down()));
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(self.hand_off(event)));
            }
            match self.mode {
                Mode::CatchUp => {
                    if let Err(e) = self.catch_up().await {
                        return Some(self.end(e));
                    }
                    self.observe_lag = true;
                }
                Mode::Live => {
                    if let Some(event) = self.next_in_batch() {
                        return Some(Ok(self.hand_off(event)));
                    }
                    // The batch is done: take the next one waiting, else wait for one.
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
                            self.batch = Some((batch, 0));
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

    /// The next event of the current batch past the cursor that the selection keeps.
    fn next_in_batch(&mut self) -> Option<Arc<SharedEvent>> {
        let (batch, at) = self.batch.as_mut()?;
        while let Some(item) = batch.get(*at) {
            *at += 1;
            if item.position <= self.cursor {
                continue;
            }
            self.cursor = item.position;
            if self.selection.matches(&item.event) {
                return Some(item.event.clone());
            }
        }
        self.batch = None;
        None
    }

    /// One page from the store after the cursor; live again once the store has no more.
    async fn catch_up(&mut self) -> Result<(), Error> {
        self.batch = None;
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
        self.pending
            .extend(page.events.into_iter().map(SharedEvent::new));
        Ok(())
    }

    fn hand_off(&mut self, event: Arc<SharedEvent>) -> Arc<SharedEvent> {
        if self.observe_lag {
            self.observe_lag = false;
            let shared = self.shared();
            let lag_micros = shared.clock.now().unix_micros() - event.occurred_at.unix_micros();
            shared
                .metrics
                .lag
                .observe(lag_micros.max(0) as f64 / 1_000_000.0);
        }
        self.delivered += 1;
        event
    }

    /// Tells the metric the deliveries counted so far.
    fn flush_delivered(&mut self) {
        if self.delivered > 0 {
            self.shared().metrics.delivered.inc_by(self.delivered);
            self.delivered = 0;
        }
    }

    fn end(&mut self, error: Error) -> Result<Arc<SharedEvent>, Error> {
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
