//! Refusal and end reasons, and the Prometheus counters of the tunnel server (`/metrics`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why a request was refused (the `reason` label of
/// `hybrid_tunnel_rejections_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reject {
    TooManyConnections,
    TooManyFromSource,
    TooManyWaitingFromSource,
    TlsHandshake,
    Timeout,
    BadRequest,
    HeadTooLarge,
    Method,
    NotFound,
    NotWebSocket,
    NoSubprotocol,
    BadTunnelId,
    Origin,
    DuplicateTunnel,
    NoSuchTunnel,
    WrongRoutingId,
    AlreadyPaired,
}

impl Reject {
    pub(super) const ALL: [Reject; 17] = [
        Reject::TooManyConnections,
        Reject::TooManyFromSource,
        Reject::TooManyWaitingFromSource,
        Reject::TlsHandshake,
        Reject::Timeout,
        Reject::BadRequest,
        Reject::HeadTooLarge,
        Reject::Method,
        Reject::NotFound,
        Reject::NotWebSocket,
        Reject::NoSubprotocol,
        Reject::BadTunnelId,
        Reject::Origin,
        Reject::DuplicateTunnel,
        Reject::NoSuchTunnel,
        Reject::WrongRoutingId,
        Reject::AlreadyPaired,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Reject::TooManyConnections => "too_many_connections",
            Reject::TooManyFromSource => "too_many_from_source",
            Reject::TooManyWaitingFromSource => "too_many_waiting_from_source",
            Reject::TlsHandshake => "tls_handshake",
            Reject::Timeout => "timeout",
            Reject::BadRequest => "bad_request",
            Reject::HeadTooLarge => "head_too_large",
            Reject::Method => "method",
            Reject::NotFound => "not_found",
            Reject::NotWebSocket => "not_websocket",
            Reject::NoSubprotocol => "no_subprotocol",
            Reject::BadTunnelId => "bad_tunnel_id",
            Reject::Origin => "origin",
            Reject::DuplicateTunnel => "duplicate_tunnel",
            Reject::NoSuchTunnel => "no_such_tunnel",
            Reject::WrongRoutingId => "wrong_routing_id",
            Reject::AlreadyPaired => "already_paired",
        }
    }

    /// The HTTP status answered, when there is still a connection to answer on.
    pub(super) fn status(self) -> u16 {
        match self {
            Reject::BadRequest
            | Reject::NotWebSocket
            | Reject::NoSubprotocol
            | Reject::BadTunnelId => 400,
            Reject::Origin => 403,
            Reject::NotFound | Reject::NoSuchTunnel | Reject::WrongRoutingId => 404,
            Reject::Method => 405,
            Reject::DuplicateTunnel | Reject::AlreadyPaired => 409,
            Reject::HeadTooLarge => 431,
            Reject::TooManyFromSource | Reject::TooManyWaitingFromSource => 429,
            Reject::TooManyConnections => 503,
            Reject::TlsHandshake | Reject::Timeout => 408,
        }
    }
}

/// How a tunnel ended (the `reason` label of `hybrid_tunnel_tunnels_ended_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    PhoneClosed,
    DesktopClosed,
    DesktopFailed,
    TextFrame,
    Oversize,
    TooManyMessages,
    ProtocolError,
    QueueFull,
    SlowFrame,
    WaitExpired,
    Ttl,
    Shutdown,
}

impl End {
    pub(super) const ALL: [End; 12] = [
        End::PhoneClosed,
        End::DesktopClosed,
        End::DesktopFailed,
        End::TextFrame,
        End::Oversize,
        End::TooManyMessages,
        End::ProtocolError,
        End::QueueFull,
        End::SlowFrame,
        End::WaitExpired,
        End::Ttl,
        End::Shutdown,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            End::PhoneClosed => "phone_closed",
            End::DesktopClosed => "desktop_closed",
            End::DesktopFailed => "desktop_failed",
            End::TextFrame => "text_frame",
            End::Oversize => "oversize",
            End::TooManyMessages => "too_many_messages",
            End::ProtocolError => "protocol_error",
            End::QueueFull => "queue_full",
            End::SlowFrame => "slow_frame",
            End::WaitExpired => "wait_expired",
            End::Ttl => "ttl",
            End::Shutdown => "shutdown",
        }
    }

    /// The close frame (status code, RFC 6455 §7.4.1, and reason) sent to
    /// the sides when the tunnel ends this way.
    pub(super) fn close_frame(self) -> (u16, &'static str) {
        match self {
            End::PhoneClosed | End::DesktopClosed => (1000, "peer closed"),
            End::DesktopFailed => (1001, "peer failed to connect"),
            End::TextFrame => (1003, "text frames are not allowed"),
            End::Oversize => (1009, "message too large"),
            End::TooManyMessages => (1008, "too many messages"),
            End::ProtocolError => (1002, "WebSocket protocol error"),
            End::QueueFull => (1008, "too much data before the desktop connected"),
            End::SlowFrame => (1008, "frame not received in time"),
            End::WaitExpired => (1008, "no desktop connected in time"),
            End::Ttl => (1008, "tunnel lifetime exceeded"),
            End::Shutdown => (1001, "server shutting down"),
        }
    }
}

/// Why `accept` failed (the `reason` label of `hybrid_tunnel_accept_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AcceptError {
    /// EMFILE/ENFILE: the process or the system ran out of file descriptors.
    Descriptors,
    /// Anything else (ENOBUFS, ENOMEM, a connection aborted before accept, …).
    Other,
}

impl AcceptError {
    pub(super) const ALL: [AcceptError; 2] = [AcceptError::Descriptors, AcceptError::Other];

    pub(super) fn label(self) -> &'static str {
        match self {
            AcceptError::Descriptors => "descriptors",
            AcceptError::Other => "other",
        }
    }

    pub(super) fn of(e: &std::io::Error) -> Self {
        use rustix::io::Errno;
        // io::ErrorKind has no stable kind for EMFILE/ENFILE.
        match e.raw_os_error() {
            Some(n) if n == Errno::MFILE.raw_os_error() || n == Errno::NFILE.raw_os_error() => {
                AcceptError::Descriptors
            }
            _ => AcceptError::Other,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Metrics {
    pub(super) connections_total: AtomicU64,
    pub(super) connections_open: AtomicI64,
    pub(super) connection_limit: AtomicU64,
    pub(super) accept_errors: [AtomicU64; AcceptError::ALL.len()],
    pub(super) tunnels_open: AtomicI64,
    pub(super) tunnels_created: AtomicU64,
    pub(super) tunnels_paired: AtomicU64,
    pub(super) messages_relayed: AtomicU64,
    pub(super) bytes_relayed: AtomicU64,
    pub(super) rejections: [AtomicU64; Reject::ALL.len()],
    pub(super) ended: [AtomicU64; End::ALL.len()],
}

impl Metrics {
    pub(super) fn reject(&self, r: Reject) {
        if let Some(c) = self.rejections.get(r as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn accept_failed(&self, e: AcceptError) {
        if let Some(c) = self.accept_errors.get(e as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn ended(&self, e: End) {
        if let Some(c) = self.ended.get(e as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn relayed(&self, bytes: usize) {
        self.messages_relayed.fetch_add(1, Ordering::Relaxed);
        self.bytes_relayed
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub(super) fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "hybrid_tunnel_tunnels_open",
            "gauge",
            "Tunnels currently open (waiting for a desktop or paired).",
            self.tunnels_open.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "hybrid_tunnel_connections_total",
            "counter",
            "TCP connections accepted.",
            get(&self.connections_total),
        );
        metric(
            "hybrid_tunnel_connections_open",
            "gauge",
            "Connections open now (HTTP, waiting or paired).",
            self.connections_open.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "hybrid_tunnel_connection_limit",
            "gauge",
            "Simultaneous connections allowed (max_connections, by default from the descriptor limit).",
            get(&self.connection_limit),
        );
        metric(
            "hybrid_tunnel_tunnels_created_total",
            "counter",
            "Tunnels opened by a phone (/cable/new/).",
            get(&self.tunnels_created),
        );
        metric(
            "hybrid_tunnel_tunnels_paired_total",
            "counter",
            "Tunnels joined by a desktop (/cable/connect/).",
            get(&self.tunnels_paired),
        );
        metric(
            "hybrid_tunnel_messages_relayed_total",
            "counter",
            "Binary messages delivered to the other side.",
            get(&self.messages_relayed),
        );
        metric(
            "hybrid_tunnel_bytes_relayed_total",
            "counter",
            "Payload bytes delivered to the other side.",
            get(&self.bytes_relayed),
        );
        let _ = write!(
            out,
            "# HELP hybrid_tunnel_rejections_total Requests refused, by reason.\n\
             # TYPE hybrid_tunnel_rejections_total counter\n"
        );
        for (r, c) in Reject::ALL.iter().zip(&self.rejections) {
            let _ = writeln!(
                out,
                "hybrid_tunnel_rejections_total{{reason=\"{}\"}} {}",
                r.label(),
                c.load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP hybrid_tunnel_accept_errors_total accept() failures, by reason (each one backs off).\n\
             # TYPE hybrid_tunnel_accept_errors_total counter\n"
        );
        for (e, c) in AcceptError::ALL.iter().zip(&self.accept_errors) {
            let _ = writeln!(
                out,
                "hybrid_tunnel_accept_errors_total{{reason=\"{}\"}} {}",
                e.label(),
                c.load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP hybrid_tunnel_tunnels_ended_total Tunnels ended, by reason.\n\
             # TYPE hybrid_tunnel_tunnels_ended_total counter\n"
        );
        for (e, c) in End::ALL.iter().zip(&self.ended) {
            let _ = writeln!(
                out,
                "hybrid_tunnel_tunnels_ended_total{{reason=\"{}\"}} {}",
                e.label(),
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render() {
        let m = Metrics::default();
        m.reject(Reject::NoSubprotocol);
        m.ended(End::Ttl);
        m.relayed(10);
        m.accept_failed(AcceptError::of(&std::io::Error::from_raw_os_error(24)));
        let text = m.render();
        assert!(text.contains("hybrid_tunnel_accept_errors_total{reason=\"descriptors\"} 1\n"));
        assert!(text.contains("hybrid_tunnel_accept_errors_total{reason=\"other\"} 0\n"));
        assert!(text.contains("hybrid_tunnel_rejections_total{reason=\"no_subprotocol\"} 1\n"));
        assert!(text.contains("hybrid_tunnel_tunnels_ended_total{reason=\"ttl\"} 1\n"));
        assert!(text.contains("hybrid_tunnel_bytes_relayed_total 10\n"));
        assert!(text.contains("# TYPE hybrid_tunnel_tunnels_open gauge\n"));
    }
}
