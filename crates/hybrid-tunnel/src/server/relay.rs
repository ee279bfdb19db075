//! One connection's life: TLS accept, the HTTP answer, then for a phone the
//! whole tunnel (waiting, pairing, relaying, ending) and for a desktop the
//! hand-over to the phone's task.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::stream::MaybeTls;
use crate::TunnelId;

use super::frame::{far_future, Guarded};
use super::http::{
    check_upgrade, forwarded_for, read_head, refuse, respond, route, switch_protocols, RequestHead,
    Route,
};
use super::legs::{Legs, Side};
use super::limits::SourceKey;
use super::metrics::{End, Reject};
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
async fn websocket(inner: &Inner, stream: MaybeTls, rest: Vec<u8>) -> super::Ws {
    let guarded = Guarded::new(stream, &rest, inner.frame_timeout());
    WebSocketStream::from_partially_read(guarded, rest, Role::Server, Some(inner.ws_config())).await
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
        ws: websocket(&inner, stream, rest).await,
        _admission: admission,
    };

    let limits = Limits {
        max_bytes: inner.config.max_message_bytes,
        max_count: inner.config.max_messages_per_side,
    };
    let mut phone_count = 0u32;
    let mut queued: VecDeque<Bytes> = VecDeque::new();

    // Phase 1: wait for the desktop, queueing what the phone sends.
    let waiting_phase = async {
        let mut rx = rx;
        let mut queued_bytes = 0usize;
        loop {
            tokio::select! {
                joined = &mut rx => return joined.map_err(|_| End::DesktopFailed),
                m = phone.ws.next() => match classify(m, &limits, &mut phone_count) {
                    Event::Message(data) => {
                        queued_bytes = queued_bytes.saturating_add(data.len());
                        if queued_bytes > MAX_QUEUED_BYTES {
                            return Err(End::QueueFull);
                        }
                        // A copy of exactly its size: the received bytes share
                        // the (larger) read buffer.
                        queued.push_back(Bytes::copy_from_slice(&data));
                    }
                    Event::Ignore => {}
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
            finish(&inner, id, end, Some(phone), None).await;
            return;
        }
    };
    inner.metrics.tunnels_paired.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(tunnel = ?id, "desktop connected");

    // Phase 2: deliver the queue, then relay both ways.
    let relaying = async {
        while let Some(data) = queued.pop_front() {
            let len = data.len();
            if desktop.ws.send(Message::Binary(data)).await.is_err() {
                return End::DesktopClosed;
            }
            inner.metrics.relayed(len);
        }
        queued.shrink_to_fit();
        let mut desktop_count = 0u32;
        // Polls only the leg that was woken (legs.rs).
        let mut legs = Legs::new();
        loop {
            let (side, m) = legs.next(&mut phone.ws, &mut desktop.ws).await;
            let (count, to, to_closed, from_closed) = match side {
                Side::Phone => (
                    &mut phone_count,
                    &mut desktop.ws,
                    End::DesktopClosed,
                    End::PhoneClosed,
                ),
                Side::Desktop => (
                    &mut desktop_count,
                    &mut phone.ws,
                    End::PhoneClosed,
                    End::DesktopClosed,
                ),
            };
            match classify(m, &limits, count) {
                Event::Message(data) => {
                    let len = data.len();
                    if to.send(Message::Binary(data)).await.is_err() {
                        return to_closed;
                    }
                    inner.metrics.relayed(len);
                }
                Event::Ignore => {}
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
        ws: websocket(&inner, stream, rest).await,
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
    tokio::join!(close_leg(phone, frame.clone()), close_leg(desktop, frame));
}

async fn close_leg(leg: Option<Leg>, frame: CloseFrame) {
    if let Some(mut leg) = leg {
        close_ws(&mut leg.ws, frame).await;
    }
}

/// Sends a close frame, ends our side of the connection, and waits briefly
/// for the peer's reply; bounded.
///
/// The write side is shut down (FIN) as soon as the close frame is out: the
/// server closes the TCP connection first (RFC 6455 §7.1.1), and a peer
/// waiting for the end of the stream sees it with the close frame instead
/// of one more round trip later, after the server has read its reply
/// (strace, pairs phase: that wait was on every pair's critical path;
/// docs/performance.md). The read side stays open for the reply, so it is
/// still read and the connection ends without a reset.
pub(super) async fn close_ws(ws: &mut super::Ws, frame: CloseFrame) {
    if let Ok(Ok(())) = tokio::time::timeout(CLOSE_WAIT, ws.close(Some(frame))).await {
        let _ = tokio::time::timeout(CLOSE_WAIT, ws.get_mut().shutdown()).await;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

pub(super) struct Limits {
    pub(super) max_bytes: usize,
    pub(super) max_count: u32,
}

/// One incoming WebSocket event, judged against the limits.
#[derive(Debug)]
pub(super) enum Event {
    Message(Bytes),
    Ignore,
    Closed,
    Violation(End),
}

pub(super) fn classify(
    next: Option<Result<Message, WsError>>,
    limits: &Limits,
    count: &mut u32,
) -> Event {
    match next {
        None | Some(Ok(Message::Close(_))) => Event::Closed,
        Some(Ok(Message::Binary(data))) => {
            if data.len() > limits.max_bytes {
                return Event::Violation(End::Oversize);
            }
            *count = count.saturating_add(1);
            if *count > limits.max_count {
                return Event::Violation(End::TooManyMessages);
            }
            Event::Message(data)
        }
        Some(Ok(Message::Text(_))) => Event::Violation(End::TextFrame),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Event::Ignore,
        Some(Err(WsError::Capacity(_))) => Event::Violation(End::Oversize),
        Some(Err(WsError::Io(e))) if e.kind() == std::io::ErrorKind::TimedOut => {
            Event::Violation(End::SlowFrame)
        }
        Some(Err(
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Io(_)
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        )) => Event::Closed,
        Some(Err(_)) => Event::Violation(End::ProtocolError),
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
        let bin = |b: &[u8]| Some(Ok(Message::Binary(b.to_vec().into())));
        let slow = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert!(matches!(
            classify(Some(Err(WsError::Io(slow))), &limits, &mut n),
            Event::Violation(End::SlowFrame)
        ));
        assert!(matches!(
            classify(bin(b"abcd"), &limits, &mut n),
            Event::Message(_)
        ));
        assert!(matches!(
            classify(bin(b"abcde"), &limits, &mut n),
            Event::Violation(End::Oversize)
        ));
        assert!(matches!(
            classify(bin(b""), &limits, &mut n),
            Event::Message(_)
        ));
        assert!(matches!(
            classify(bin(b"a"), &limits, &mut n),
            Event::Violation(End::TooManyMessages)
        ));
        assert!(matches!(
            classify(Some(Ok(Message::Text("x".into()))), &limits, &mut n),
            Event::Violation(End::TextFrame)
        ));
        assert!(matches!(classify(None, &limits, &mut n), Event::Closed));
    }
}
