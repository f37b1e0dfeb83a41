//! What /proc says about a process: CPU time, resident set size and its high-water mark.

use std::sync::OnceLock;

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Current resident set size in bytes (0 if unknown).
pub fn rss(pid: u32) -> u64 {
    status_kb(pid, "VmRSS").unwrap_or(0) * 1024
}

/// Peak resident set size (VmHWM) in bytes since start or the last reset (0 if unknown).
pub fn peak_rss(pid: u32) -> u64 {
    status_kb(pid, "VmHWM").unwrap_or(0) * 1024
}

/// Resets VmHWM to the current RSS (`echo 5 > /proc/PID/clear_refs`, Linux ≥ 4.0), so a
/// peak can be read per measurement. Best effort: without permission the peak stays
/// cumulative.
pub fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of a process (its threads included).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / clock_ticks()
}

/// Context switches (voluntary + involuntary) of all threads of a process, as far as the
/// threads alive now tell (a thread that exited takes its count with it).
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// (busy, total) jiffies of the whole machine, from the first line of /proc/stat.
pub fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Waits (up to `max`) until the machine is quiet: less than `threshold` of its CPU time busy
/// over half a second. Returns the seconds waited and the last busy share seen.
pub async fn wait_quiet(max: std::time::Duration, threshold: f64) -> (f64, f64) {
    let started = std::time::Instant::now();
    let mut busy = f64::NAN;
    while started.elapsed() < max {
        let a = machine_jiffies();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let b = machine_jiffies();
        let total = b.1.saturating_sub(a.1) as f64;
        busy = if total > 0.0 {
            b.0.saturating_sub(a.0) as f64 / total
        } else {
            0.0
        };
        if busy < threshold {
            break;
        }
    }
    (started.elapsed().as_secs_f64(), busy)
}
