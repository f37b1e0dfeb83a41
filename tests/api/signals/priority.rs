//! Where the signals workers run: on threads of their own at the idle CPU priority, so that
//! building and posting tokens never takes a core from the requests.

use super::*;

/// The threads of this process named `name`, with their scheduling policy and nice value.
fn threads_named(name: &str) -> Vec<(i32, i32, i32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("the process's threads") {
        let path = entry.expect("a thread").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let Some(tid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: both calls only read the scheduling settings of a thread of this process.
        let (policy, nice) = unsafe {
            (
                libc::sched_getscheduler(tid),
                libc::getpriority(libc::PRIO_PROCESS, u32::try_from(tid).unwrap_or(0)),
            )
        };
        if policy >= 0 {
            found.push((tid, policy, nice));
        }
    }
    found
}

#[tokio::test]
async fn the_workers_deliver_from_threads_at_the_idle_cpu_priority() {
    let app = signals_app().await;
    let Some(receiver) = receiver(&app) else {
        return;
    };
    push_stream(&app, &receiver, "idle", &[SESSION_REVOKED]).await;
    receiver.wait_for("idle", 1).await;
    let alice = app.add_user("alice").await;
    let session = app.create_session_for(&alice).await.session_id;
    admin_revoke(&app, alice.id.as_str(), &session).await;
    let got = receiver.wait_for("idle", 2).await;
    assert_eq!(revoked_sessions(&got), vec![session]);

    let threads = threads_named("signals");
    assert!(
        !threads.is_empty(),
        "the workers run on threads named \"signals\""
    );
    for (tid, policy, nice) in threads {
        // SCHED_IDLE, or nice 19 where the system refuses it.
        assert!(
            policy == libc::SCHED_IDLE || nice == 19,
            "thread {tid}: policy {policy}, nice {nice}"
        );
    }
}
