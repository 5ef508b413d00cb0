//! Process metrics from `/proc/self`, without an extra crate.

/// What the process uses; `None` where `/proc` does not tell (not Linux).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) resident_bytes: Option<u64>,
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) open_fds: Option<u64>,
    pub(crate) threads: Option<u64>,
}

/// Clock ticks per second of `utime`/`stime` in `/proc/self/stat`. Linux fixes USER_HZ
/// at 100 in its user-space ABI on every architecture we run on.
const USER_HZ: f64 = 100.0;

/// Reads the process's numbers (small `/proc` files, through tokio's blocking pool).
pub(crate) async fn read() -> ProcessStats {
    let status = tokio::fs::read_to_string("/proc/self/status").await.ok();
    let stat = tokio::fs::read_to_string("/proc/self/stat").await.ok();
    let open_fds = count_fds().await;
    let field = |name: &str| -> Option<u64> {
        status.as_deref()?.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    ProcessStats {
        resident_bytes: field("VmRSS").map(|kb| kb * 1024),
        cpu_seconds: stat.as_deref().and_then(cpu_seconds),
        open_fds,
        threads: field("Threads"),
    }
}

/// `utime + stime` of `/proc/self/stat`, in seconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Descriptors open in this process now (`None` where `/proc` does not tell).
pub(crate) async fn count_fds() -> Option<u64> {
    let mut dir = tokio::fs::read_dir("/proc/self/fd").await.ok()?;
    let mut n = 0u64;
    while let Ok(Some(_)) = dir.next_entry().await {
        n += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 200";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[tokio::test]
    async fn reads_this_process() {
        let p = read().await;
        if cfg!(target_os = "linux") {
            assert!(p.resident_bytes.unwrap_or(0) > 0, "{p:?}");
            assert!(p.cpu_seconds.is_some() && p.open_fds.is_some() && p.threads.is_some());
        }
    }
}
