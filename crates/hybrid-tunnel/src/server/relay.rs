//! One connection's life: TLS accept, the HTTP answer, then for a phone the
//! whole tunnel (waiting, pairing, relaying, ending) and for a desktop the
//! hand-over to the phone's task.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::stream::MaybeTls;
use crate::TunnelId;

use super::frame::{far_future, Guarded};
use super::http::{
    check_upgrade, forwarded_for, read_head, refuse, respond, route, switch_protocols, RequestHead,
    Route,
};
use super::limits::SourceKey;
use super::metrics::{End, Reject};
use super::ws::{self, Conn, Failure, Incoming};
use super::{Admission, Inner, Leg, Slot, SlotGuard, CLOSE_WAIT, MAX_QUEUED_BYTES};

/// What the HTTP phase of a connection decided.
pub(super) enum Next {
    Phone(TunnelId, String),
    Desktop(TunnelId, String),
}

/// The HTTP phase's outcome: the stream, bytes read past the head, the
/// route, and the source the connection counts against.
struct Routed {
    stream: MaybeTls,
    rest: Vec<u8>,
    next: Next,
    source: SourceKey,
}

pub(super) async fn handle_connection(
    inner: Arc<Inner>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut admission: Admission,
    stop: watch::Receiver<bool>,
    plain: bool,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, "could not set TCP_NODELAY: {e}");
    }
    // Boxed: the TLS handshake's state is large and only needed until the
    // answer; it must not stay in every tunnel's task for its whole life.
    let http = Box::pin(tokio::time::timeout(
        inner.handshake_timeout(),
        http_phase(&inner, tcp, peer, &mut admission, plain),
    ));
    let routed = match http.await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(_) => {
            inner.metrics.reject(Reject::Timeout);
            return;
        }
    };
    let Routed {
        stream,
        rest,
        next,
        source,
    } = routed;
    // Boxed too: a tunnel's state (two WebSockets, their timers and the
    // select! state) is several KiB, and a future held inline is copied
    // whole when the task is spawned and again when it ends (perf, pairs
    // phase: 5.5 % of the server's CPU in memmove, docs/performance.md).
    match next {
        Next::Phone(id, accept) => {
            Box::pin(phone(
                inner, stream, rest, id, accept, admission, source, stop,
            ))
            .await;
        }
        Next::Desktop(id, accept) => {
            Box::pin(desktop(inner, stream, rest, id, accept, admission)).await;
        }
    }
}

/// TLS accept, the request head, the source behind a trusted proxy, and the answer.
async fn http_phase(
    inner: &Inner,
    tcp: TcpStream,
    peer: SocketAddr,
    admission: &mut Admission,
    plain: bool,
) -> Option<Routed> {
    let tls = if plain { None } else { inner.tls.as_ref() };
    let mut stream = match tls {
        None => MaybeTls::Plain(tcp),
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(s) => MaybeTls::Server(Box::new(s)),
            Err(e) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                inner.metrics.reject(Reject::TlsHandshake);
                return None;
            }
        },
    };
    let (head, rest) = match read_head(&mut stream).await {
        Ok(x) => x,
        Err(Some(r)) => {
            refuse(inner, &mut stream, r).await;
            return None;
        }
        Err(None) => return None,
    };
    let mut client = peer.ip();
    if admission.source.is_none() {
        // From a trusted proxy: count the client it names (or the proxy
        // itself when it names none).
        client = forwarded_for(&head).unwrap_or(client);
        match inner.sources.admit_connection(SourceKey::of(client)) {
            Some(g) => admission.source = Some(g),
            None => {
                refuse(inner, &mut stream, Reject::TooManyFromSource).await;
                return None;
            }
        }
    }
    let next = answer(inner, &mut stream, &head).await?;
    Some(Routed {
        stream,
        rest,
        next,
        source: SourceKey::of(client),
    })
}

/// Answers `/healthz`, `/metrics` and refusals; passes tunnel requests on.
pub(super) async fn answer(
    inner: &Inner,
    stream: &mut MaybeTls,
    head: &RequestHead,
) -> Option<Next> {
    if head.method != "GET" {
        refuse(inner, stream, Reject::Method).await;
        return None;
    }
    let origin = inner.config.origin_host.as_deref();
    match route(&head.path) {
        Route::Healthz => {
            respond(stream, 200, "text/plain; charset=utf-8", "ok\n").await;
            None
        }
        Route::Metrics => {
            let body = inner.metrics.render();
            respond(
                stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await;
            None
        }
        Route::Refuse(r) => {
            refuse(inner, stream, r).await;
            None
        }
        Route::New(id) => match check_upgrade(head, origin) {
            Ok(accept) => Some(Next::Phone(id, accept)),
            Err(r) => {
                refuse(inner, stream, r).await;
                None
            }
        },
        Route::Connect(routing, id) => {
            let accept = match check_upgrade(head, origin) {
                Ok(a) => a,
                Err(r) => {
                    refuse(inner, stream, r).await;
                    return None;
                }
            };
            if routing != inner.routing_id {
                refuse(inner, stream, Reject::WrongRoutingId).await;
                return None;
            }
            Some(Next::Desktop(id, accept))
        }
    }
}

/// The upgraded stream as a WebSocket whose frames must arrive in time.
fn websocket(inner: &Inner, stream: MaybeTls, rest: Vec<u8>) -> Conn {
    let guarded = Guarded::new(stream, &rest, inner.frame_timeout());
    Conn::new(guarded, rest, inner.config.max_message_bytes)
}

/// `/cable/new/<id>`: registers the tunnel, answers 101, then owns the tunnel.
#[allow(clippy::too_many_arguments)]
pub(super) async fn phone(
    inner: Arc<Inner>,
    mut stream: MaybeTls,
    rest: Vec<u8>,
    id: TunnelId,
    accept: String,
    admission: Admission,
    source: SourceKey,
    mut stop: watch::Receiver<bool>,
) {
    // Durations are validated at bind (at most a day), so these cannot
    // overflow; if they did, the tunnel would simply never expire by time.
    let now = Instant::now();
    let ttl_deadline = now
        .checked_add(Duration::from_secs(inner.config.ttl_secs))
        .unwrap_or_else(far_future);
    let wait_deadline = now
        .checked_add(Duration::from_secs(inner.config.wait_secs))
        .unwrap_or_else(far_future)
        .min(ttl_deadline);
    let Some(waiting) = inner.sources.admit_waiting(source) else {
        refuse(&inner, &mut stream, Reject::TooManyWaitingFromSource).await;
        return;
    };
    let (tx, rx) = oneshot::channel();
    let inserted = {
        let mut tunnels = inner.tunnels();
        match tunnels.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Slot {
                    desktop_tx: Some(tx),
                });
                true
            }
        }
    };
    if !inserted {
        refuse(&inner, &mut stream, Reject::DuplicateTunnel).await;
        return;
    }
    inner.metrics.tunnels_open.fetch_add(1, Ordering::Relaxed);
    // Dropped before the closing handshakes, so the id is free (and the
    // gauge down) as soon as the tunnel has ended.
    let guard = SlotGuard {
        inner: inner.clone(),
        id,
    };
    let wrote = tokio::time::timeout(
        inner.handshake_timeout(),
        switch_protocols(&mut stream, &accept, Some(inner.routing_id)),
    )
    .await;
    drop(accept);
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    inner
        .metrics
        .tunnels_created
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(tunnel = ?id, "phone connected");
    let mut phone = Leg {
        ws: websocket(&inner, stream, rest),
        _admission: admission,
    };

    let limits = Limits {
        max_bytes: inner.config.max_message_bytes,
        max_count: inner.config.max_messages_per_side,
    };
    let mut phone_count = 0u32;
    let mut queued: VecDeque<(usize, Vec<u8>)> = VecDeque::new();

    // Phase 1: wait for the desktop, queueing what the phone sends.
    let mut rx = rx;
    let waiting_phase = async {
        let mut queued_bytes = 0usize;
        loop {
            tokio::select! {
                joined = &mut rx => return joined.map_err(|_| End::DesktopFailed),
                m = phone.ws.next() => match classify(m, &limits, &mut phone_count, phone.ws.message()) {
                    Event::Message => {
                        let data = phone.ws.message();
                        queued_bytes = queued_bytes.saturating_add(data.len());
                        if queued_bytes > MAX_QUEUED_BYTES {
                            return Err(End::QueueFull);
                        }
                        // Framed now, sent as it is once the desktop is here.
                        queued.push_back((data.len(), ws::frame(0x2, data)));
                    }
                    Event::Ping => {
                        if phone.ws.pong().await.is_err() {
                            return Err(End::PhoneClosed);
                        }
                    }
                    Event::Closed => return Err(End::PhoneClosed),
                    Event::Violation(end) => return Err(end),
                }
            }
        }
    };
    let expired = if wait_deadline < ttl_deadline {
        End::WaitExpired
    } else {
        End::Ttl
    };
    let joined = bounded(wait_deadline, expired, &mut stop, waiting_phase).await;
    drop(waiting);
    let mut desktop = match joined {
        Ok(leg) => leg,
        Err(end) => {
            drop(guard);
            // The desktop may have been answered 101 and handed over in
            // the same turn as the phone's end won the select!: it gets its
            // close frame too, not a bare end of stream (found by the
            // pairs benchmark's own client, docs/performance.md). After
            // `close`, no hand-over can land any more (the desktop's task
            // then closes its leg itself).
            rx.close();
            let desktop = rx.try_recv().ok();
            finish(&inner, id, end, Some(phone), desktop).await;
            return;
        }
    };
    drop(rx);
    inner.metrics.tunnels_paired.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(tunnel = ?id, "desktop connected");

    // Phase 2: deliver the queue, then relay both ways.
    let relaying = async {
        while let Some((len, framed)) = queued.pop_front() {
            if desktop.ws.send_frame(&framed).await.is_err() {
                return End::DesktopClosed;
            }
            inner.metrics.relayed(len);
        }
        queued = VecDeque::new();
        let mut desktop_count = 0u32;
        loop {
            // Polling the idle leg costs a readiness check (no buffer is
            // zero-filled, nothing is allocated), so both are polled.
            let (from_phone, m) = tokio::select! {
                m = phone.ws.next() => (true, m),
                m = desktop.ws.next() => (false, m),
            };
            let (from, to, count, to_closed, from_closed) = if from_phone {
                (
                    &mut phone.ws,
                    &mut desktop.ws,
                    &mut phone_count,
                    End::DesktopClosed,
                    End::PhoneClosed,
                )
            } else {
                (
                    &mut desktop.ws,
                    &mut phone.ws,
                    &mut desktop_count,
                    End::PhoneClosed,
                    End::DesktopClosed,
                )
            };
            match classify(m, &limits, count, from.message()) {
                Event::Message => {
                    let len = from.message().len();
                    // One write: the frame is re-headed in place (ws.rs).
                    if to.relay_from(from).await.is_err() {
                        return to_closed;
                    }
                    inner.metrics.relayed(len);
                }
                Event::Ping => {
                    if from.pong().await.is_err() {
                        return from_closed;
                    }
                }
                Event::Closed => return from_closed,
                Event::Violation(end) => return end,
            }
        }
    };
    let end = bounded(ttl_deadline, End::Ttl, &mut stop, async {
        Ok::<_, End>(relaying.await)
    })
    .await
    .unwrap_or_else(|e| e);
    drop(guard);
    finish(&inner, id, end, Some(phone), Some(desktop)).await;
}

/// `/cable/connect/<routing id>/<id>`: claims the waiting tunnel, answers
/// 101 and hands the WebSocket to the phone's task.
pub(super) async fn desktop(
    inner: Arc<Inner>,
    mut stream: MaybeTls,
    rest: Vec<u8>,
    id: TunnelId,
    accept: String,
    admission: Admission,
) {
    let claimed = {
        let mut tunnels = inner.tunnels();
        match tunnels.get_mut(&id) {
            None => Err(Reject::NoSuchTunnel),
            Some(slot) => slot.desktop_tx.take().ok_or(Reject::AlreadyPaired),
        }
    };
    let tx = match claimed {
        Ok(tx) => tx,
        Err(r) => {
            refuse(&inner, &mut stream, r).await;
            return;
        }
    };
    // If this fails, dropping `tx` ends the phone's wait (End::DesktopFailed).
    let wrote = tokio::time::timeout(
        inner.handshake_timeout(),
        switch_protocols(&mut stream, &accept, None),
    )
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    let leg = Leg {
        ws: websocket(&inner, stream, rest),
        _admission: admission,
    };
    if let Err(mut leg) = tx.send(leg) {
        // The phone left in between.
        close_ws(&mut leg.ws, End::PhoneClosed.close_frame()).await;
    }
}

/// Runs `fut` until it finishes, `deadline` passes (ending with `expired`)
/// or the server stops.
pub(super) async fn bounded<T>(
    deadline: Instant,
    expired: End,
    stop: &mut watch::Receiver<bool>,
    fut: impl Future<Output = Result<T, End>>,
) -> Result<T, End> {
    tokio::select! {
        r = fut => r,
        () = tokio::time::sleep_until(deadline) => Err(expired),
        _ = stop.wait_for(|s| *s) => Err(End::Shutdown),
    }
}

/// Ends a tunnel: counts it and closes whichever sides are connected. Each
/// side is closed on its own and its connection dropped as soon as its own
/// closing handshake is done (or timed out): one side that is slow to
/// answer never holds the other's connection open.
pub(super) async fn finish(
    inner: &Inner,
    id: TunnelId,
    end: End,
    phone: Option<Leg>,
    desktop: Option<Leg>,
) {
    tracing::debug!(tunnel = ?id, reason = end.label(), "tunnel ended");
    inner.metrics.ended(end);
    let frame = end.close_frame();
    tokio::join!(close_leg(phone, frame), close_leg(desktop, frame));
}

async fn close_leg(leg: Option<Leg>, frame: (u16, &'static str)) {
    if let Some(mut leg) = leg {
        close_ws(&mut leg.ws, frame).await;
    }
}

/// Sends a close frame, ends our side of the connection, and waits briefly
/// for the peer's reply; bounded ([`Conn::close`]).
pub(super) async fn close_ws(ws: &mut Conn, (code, reason): (u16, &'static str)) {
    ws.close(code, reason, CLOSE_WAIT).await;
}

pub(super) struct Limits {
    pub(super) max_bytes: usize,
    pub(super) max_count: u32,
}

/// One incoming WebSocket event, judged against the limits.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// A message to relay (the connection's [`Conn::message`]).
    Message,
    /// A ping to answer.
    Ping,
    Closed,
    Violation(End),
}

/// Judges `next`; `message` is the message it announced (if it did).
pub(super) fn classify(next: Incoming, limits: &Limits, count: &mut u32, message: &[u8]) -> Event {
    match next {
        Incoming::Message => {
            // The reader refuses longer messages already; checked again
            // here so the limit has one place that enforces it last.
            if message.len() > limits.max_bytes {
                return Event::Violation(End::Oversize);
            }
            *count = count.saturating_add(1);
            if *count > limits.max_count {
                return Event::Violation(End::TooManyMessages);
            }
            Event::Message
        }
        Incoming::Ping => Event::Ping,
        Incoming::Closed => Event::Closed,
        Incoming::Slow => Event::Violation(End::SlowFrame),
        Incoming::Failed(Failure::Text) => Event::Violation(End::TextFrame),
        Incoming::Failed(Failure::Oversize) => Event::Violation(End::Oversize),
        Incoming::Failed(Failure::Protocol) => Event::Violation(End::ProtocolError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_limits() {
        let limits = Limits {
            max_bytes: 4,
            max_count: 2,
        };
        let mut n = 0;
        let m = Incoming::Message;
        assert_eq!(
            classify(Incoming::Slow, &limits, &mut n, b""),
            Event::Violation(End::SlowFrame)
        );
        assert_eq!(classify(m, &limits, &mut n, b"abcd"), Event::Message);
        assert_eq!(
            classify(m, &limits, &mut n, b"abcde"),
            Event::Violation(End::Oversize)
        );
        assert_eq!(classify(m, &limits, &mut n, b""), Event::Message);
        assert_eq!(
            classify(m, &limits, &mut n, b"a"),
            Event::Violation(End::TooManyMessages)
        );
        assert_eq!(
            classify(Incoming::Failed(Failure::Text), &limits, &mut n, b""),
            Event::Violation(End::TextFrame)
        );
        assert_eq!(
            classify(Incoming::Failed(Failure::Protocol), &limits, &mut n, b""),
            Event::Violation(End::ProtocolError)
        );
        assert_eq!(
            classify(Incoming::Failed(Failure::Oversize), &limits, &mut n, b""),
            Event::Violation(End::Oversize)
        );
        assert_eq!(classify(Incoming::Ping, &limits, &mut n, b""), Event::Ping);
        assert_eq!(
            classify(Incoming::Closed, &limits, &mut n, b""),
            Event::Closed
        );
    }
}
