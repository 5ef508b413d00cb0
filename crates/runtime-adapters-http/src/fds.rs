//! The control plane's share of the process's file descriptors.
//!
//! Every open connection holds a descriptor. A flood of idle clients once used them all,
//! and then the Maildir source failed with "Too many open files". So besides
//! `max_connections`, the cap is clamped to what `RLIMIT_NOFILE` leaves after the
//! descriptors already open and a reserve for the rest of the process (sources, queue and
//! database connections, files). The control plane starts last, so what is open then is
//! what the runtime needs; the reserve covers what it opens later.

/// Descriptors the control plane never takes, whatever `max_connections` says.
pub(crate) const FD_RESERVE: u64 = 256;

/// The number of connections to serve at once: `max_connections`, lowered (with a
/// warning) so that [`FD_RESERVE`] descriptors stay free; at least one.
pub(crate) async fn connection_cap(max_connections: usize) -> usize {
    let Some(soft) = soft_limit() else {
        return max_connections;
    };
    let Some(open) = crate::process::count_fds().await else {
        return max_connections;
    };
    let cap = cap_for(max_connections, soft, open);
    if cap < max_connections {
        tracing::warn!(
            max_connections,
            cap,
            nofile_limit = soft,
            open,
            reserve = FD_RESERVE,
            "control plane connection cap lowered to keep descriptors free for the rest of \
             the process; raise the open-files limit (ulimit -n) to allow more"
        );
    }
    cap
}

fn cap_for(max_connections: usize, soft_limit: u64, open: u64) -> usize {
    let room = soft_limit.saturating_sub(open).saturating_sub(FD_RESERVE);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(max_connections)
        .max(1)
}

/// The soft `RLIMIT_NOFILE`, `None` when unlimited or unknown.
fn soft_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _hard)| soft)
            .filter(|&soft| soft != rlimit::INFINITY)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_the_reserve_free() {
        // Plenty of room: the configured cap holds.
        assert_eq!(cap_for(256, 65_536, 100), 256);
        // 1024 - 700 open - 256 reserved leaves 68.
        assert_eq!(cap_for(20_000, 1024, 700), 68);
        // Nothing left: one connection still, so health checks can answer.
        assert_eq!(cap_for(256, 300, 290), 1);
    }
}
