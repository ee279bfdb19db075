//! Admission limits of the tunnel server: the connection limit derived from
//! the process's file-descriptor limit, and per-source-address counts of open
//! connections and of tunnels waiting for a desktop.
//!
//! A source is an IPv4 address or an IPv6 /64 (one subscriber usually gets a
//! whole /64, so counting single IPv6 addresses would limit nobody).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Descriptors kept free for everything that is not a client connection:
/// listeners, the epoll and event descriptors of the runtime, stdio, TLS
/// files, logs, and the connections accepted only to be refused.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (the
/// kernel's default soft limit, 1 024, is far below what a tunnel server
/// needs) and returns the soft limit now in force (`None` = unlimited).
///
/// Called by `hybridd tunnel-server` at start; a library user decides for
/// its own process.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!("could not raise the open-file limit to the hard limit: {e}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The connection limit a server gets when none is configured: the soft
/// descriptor limit in force minus [`RESERVED_DESCRIPTORS`] (at least 1;
/// 1 000 000 when unlimited).
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1_000_000 + RESERVED_DESCRIPTORS);
    usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS).max(1)).unwrap_or(usize::MAX)
}

/// The unit per-source limits count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum SourceKey {
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl SourceKey {
    pub(super) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(v6.octets().get(..8).unwrap_or(&[0; 8]));
                    SourceKey::V6(prefix)
                }
            },
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    connections: u32,
    waiting: u32,
}

/// Open connections and waiting tunnels per source; entries exist only
/// while a count is non-zero, so the table is as small as the load.
#[derive(Debug)]
pub(super) struct Sources {
    max_connections: u32,
    max_waiting: u32,
    table: Mutex<HashMap<SourceKey, Counts>>,
}

/// Which count a [`SourceGuard`] holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Connection,
    Waiting,
}

/// One unit of a source's count, given back on drop.
#[derive(Debug)]
pub(super) struct SourceGuard {
    sources: Arc<Sources>,
    key: SourceKey,
    kind: Kind,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut table = self.sources.table();
        if let Some(c) = table.get_mut(&self.key) {
            match self.kind {
                Kind::Connection => c.connections = c.connections.saturating_sub(1),
                Kind::Waiting => c.waiting = c.waiting.saturating_sub(1),
            }
            if c.connections == 0 && c.waiting == 0 {
                table.remove(&self.key);
                // Give memory back after a burst (a map never shrinks by itself).
                if table.capacity() > 64 && table.len() < table.capacity() / 4 {
                    let keep = table.len() * 2;
                    table.shrink_to(keep);
                }
            }
        }
    }
}

impl Sources {
    pub(super) fn new(max_connections: u32, max_waiting: u32) -> Self {
        Self {
            max_connections,
            max_waiting,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<SourceKey, Counts>> {
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // counters; they are still usable.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(self: &Arc<Self>, key: SourceKey, kind: Kind) -> Option<SourceGuard> {
        let mut table = self.table();
        let c = table.entry(key).or_default();
        let (count, max) = match kind {
            Kind::Connection => (&mut c.connections, self.max_connections),
            Kind::Waiting => (&mut c.waiting, self.max_waiting),
        };
        if *count >= max {
            if c.connections == 0 && c.waiting == 0 {
                table.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(SourceGuard {
            sources: self.clone(),
            key,
            kind,
        })
    }

    /// Counts one more open connection from `key`, unless it is at its limit.
    pub(super) fn admit_connection(self: &Arc<Self>, key: SourceKey) -> Option<SourceGuard> {
        self.admit(key, Kind::Connection)
    }

    /// Counts one more tunnel from `key` waiting for a desktop, unless at its limit.
    pub(super) fn admit_waiting(self: &Arc<Self>, key: SourceKey) -> Option<SourceGuard> {
        self.admit(key, Kind::Waiting)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let v4 = SourceKey::of("192.0.2.7".parse().unwrap());
        assert_eq!(v4, SourceKey::of("::ffff:192.0.2.7".parse().unwrap()));
        assert_eq!(
            SourceKey::of("2001:db8:1:2::1".parse().unwrap()),
            SourceKey::of("2001:db8:1:2:ffff::9".parse().unwrap())
        );
        assert_ne!(
            SourceKey::of("2001:db8:1:2::1".parse().unwrap()),
            SourceKey::of("2001:db8:1:3::1".parse().unwrap())
        );
    }

    #[test]
    fn counts_come_back_and_entries_go() {
        let s = Arc::new(Sources::new(2, 1));
        let a = SourceKey::of("192.0.2.1".parse().unwrap());
        let b = SourceKey::of("192.0.2.2".parse().unwrap());
        let c1 = s.admit_connection(a).unwrap();
        let c2 = s.admit_connection(a).unwrap();
        assert!(s.admit_connection(a).is_none());
        let other = s.admit_connection(b).unwrap();
        let w = s.admit_waiting(a).unwrap();
        assert!(s.admit_waiting(a).is_none());
        drop(c1);
        let c3 = s.admit_connection(a).unwrap();
        drop((c2, c3, w, other));
        assert_eq!(s.tracked(), 0);
        // Refusals leave nothing behind either.
        let s = Arc::new(Sources::new(0, 0));
        assert!(s.admit_connection(a).is_none());
        assert_eq!(s.tracked(), 0);
    }

    #[test]
    fn limit_follows_descriptors() {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let limit = default_max_connections() as u64;
        match soft {
            Some(soft) => assert_eq!(limit, soft.saturating_sub(RESERVED_DESCRIPTORS).max(1)),
            None => assert_eq!(limit, 1_000_000),
        }
    }
}
