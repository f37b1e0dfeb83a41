//! A push target whose cursor a prune passed: the events its receiver never took are gone,
//! so the worker says so once and carries on with what came after the prune horizon.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessiond::core::Retention;

use super::*;
use crate::helpers::*;

const PRUNED_WARNING: &str = "events were pruned before this target's receiver took them";
const DAY: Duration = Duration::from_secs(86_400);

/// Every log line written on this thread, for counting warnings.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Lines {
    fn count(&self, needle: &str) -> usize {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes).matches(needle).count()
    }
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `n` revoked sessions of `user`, by id, in the order of revocation.
async fn revoke_sessions(app: &TestApp, user: &sessiond::domain::User, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = app.create_session_for(user).await.session_id;
        admin_revoke(app, user.id.as_str(), &id).await;
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn a_push_stream_behind_a_prune_warns_once_and_gets_only_the_sets_after_the_horizon() {
    behind_a_prune(1).await;
}

/// A stream created on an empty log starts at the log's start; the events pruned before its
/// receiver took them are warned of all the same.
#[tokio::test]
async fn a_push_stream_made_on_an_empty_log_warns_of_a_prune_as_well() {
    behind_a_prune(0).await;
}

/// A push stream made after `ended_before` terminations falls behind a prune while its
/// receiver refuses.
async fn behind_a_prune(ended_before: usize) {
    // The test runtime runs the server's tasks on this thread: a thread-local subscriber sees
    // the worker's warnings without touching other tests.
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);

    // Tokens are retried for longer than the clock jumps below, so the receiver's refusals
    // never make the worker give a token up: only the prune can take events away.
    let app = signals_app_with(|s| s.signals_retry_for = 60 * DAY).await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    // Terminations before the stream exists: its cursor (the log's head when it is
    // created) is then past them, else at the log's start.
    let carol = app.add_user("carol").await;
    let before_stream = revoke_sessions(&app, &carol, ended_before).await;
    push_stream(&app, &receiver, "behind", &[SESSION_REVOKED]).await;
    receiver.wait_for("behind", 1).await;

    // The receiver answers 503 (what receiver.py supports): the worker keeps its cursor
    // before the first refused event and retries with backoff. A paused stream would sign
    // the events into its outbox, out of the prune's reach, and a disabled one drops them,
    // so neither leaves a cursor for the prune to pass.
    receiver.set_down("behind", true).await;
    let alice = app.add_user("alice").await;
    let pruned = revoke_sessions(&app, &alice, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().await["behind"].len(),
        1,
        "nothing while down"
    );

    // Past the default retention (30 days), then the prune an operator would run.
    app.advance(31 * DAY);
    let totals = app
        .core
        .prune(
            Retention {
                terminated: 30 * DAY,
                expired: 30 * DAY,
                batch: 100,
            },
            |_| {},
        )
        .await
        .expect("pruning");
    // Alice's three and those ended before the stream existed.
    assert_eq!(totals.sessions, 3 + ended_before as u64, "{totals:?}");

    // More terminations while the receiver still refuses: the worker retries from its cursor
    // behind the horizon several times (backoff from 250 ms).
    let bob = app.add_user("bob").await;
    let kept = revoke_sessions(&app, &bob, 2).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    receiver.set_down("behind", false).await;

    let got = receiver.wait_for("behind", 3).await;
    assert_eq!(
        revoked_sessions(&got),
        kept,
        "only the sets after the prune, in order"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = receiver
        .received()
        .await
        .remove("behind")
        .unwrap_or_default();
    assert_eq!(got.len(), 3, "none twice, none of the pruned: {got:#?}");
    assert!(
        revoked_sessions(&got)
            .iter()
            .all(|s| !pruned.contains(s) && !before_stream.contains(s))
    );
    assert_eq!(
        lines.count(PRUNED_WARNING),
        1,
        "one warning for one prune past the cursor"
    );
}
