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
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::stream::MaybeTls;
use crate::TunnelId;

use super::http::{
    check_upgrade, read_head, refuse, respond, route, switch_protocols, RequestHead, Route,
};
use super::metrics::{End, Reject};
use super::{Inner, Joined, Slot, SlotGuard, Ws, CLOSE_WAIT};

/// What the HTTP phase of a connection decided.
pub(super) enum Next {
    Phone(TunnelId, String),
    Desktop(TunnelId, String),
}

pub(super) async fn handle_connection(
    inner: Arc<Inner>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
    plain: bool,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, "could not set TCP_NODELAY: {e}");
    }
    let timeout = inner.handshake_timeout();
    let http = async {
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
                refuse(&inner, &mut stream, r).await;
                return None;
            }
            Err(None) => return None,
        };
        let next = answer(&inner, &mut stream, &head).await?;
        Some((stream, rest, next))
    };
    let (stream, rest, next) = match tokio::time::timeout(timeout, http).await {
        Ok(Some(x)) => x,
        Ok(None) => return,
        Err(_) => {
            inner.metrics.reject(Reject::Timeout);
            return;
        }
    };
    match next {
        Next::Phone(id, accept) => phone(inner, stream, rest, id, accept, permit, stop).await,
        Next::Desktop(id, accept) => desktop(inner, stream, rest, id, accept, permit).await,
    }
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

/// `/cable/new/<id>`: registers the tunnel, answers 101, then owns the tunnel.
pub(super) async fn phone(
    inner: Arc<Inner>,
    mut stream: MaybeTls,
    rest: Vec<u8>,
    id: TunnelId,
    accept: String,
    _permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + Duration::from_secs(inner.config.ttl_secs);
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
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    inner
        .metrics
        .tunnels_created
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(tunnel = ?id, "phone connected");
    let mut phone =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(inner.ws_config()))
            .await;

    let limits = Limits {
        max_bytes: inner.config.max_message_bytes,
        max_count: inner.config.max_messages_per_side,
    };
    let mut phone_count = 0u32;
    let mut queued: VecDeque<Vec<u8>> = VecDeque::new();

    // Phase 1: wait for the desktop, queueing what the phone sends.
    let waiting = async {
        let mut rx = rx;
        loop {
            tokio::select! {
                joined = &mut rx => return joined.map_err(|_| End::DesktopFailed),
                m = phone.next() => match classify(m, &limits, &mut phone_count) {
                    Event::Message(data) => queued.push_back(data),
                    Event::Ignore => {}
                    Event::Closed => return Err(End::PhoneClosed),
                    Event::Violation(end) => return Err(end),
                }
            }
        }
    };
    let joined = match bounded(deadline, &mut stop, waiting).await {
        Ok(j) => j,
        Err(end) => {
            drop(guard);
            finish(&inner, id, end, Some(&mut phone), None).await;
            return;
        }
    };
    inner.metrics.tunnels_paired.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(tunnel = ?id, "desktop connected");
    let mut desktop = joined.ws;

    // Phase 2: deliver the queue, then relay both ways.
    let relaying = async {
        while let Some(data) = queued.pop_front() {
            let len = data.len();
            if desktop.send(Message::Binary(data.into())).await.is_err() {
                return End::DesktopClosed;
            }
            inner.metrics.relayed(len);
        }
        let mut desktop_count = 0u32;
        loop {
            tokio::select! {
                m = phone.next() => match classify(m, &limits, &mut phone_count) {
                    Event::Message(data) => {
                        let len = data.len();
                        if desktop.send(Message::Binary(data.into())).await.is_err() {
                            return End::DesktopClosed;
                        }
                        inner.metrics.relayed(len);
                    }
                    Event::Ignore => {}
                    Event::Closed => return End::PhoneClosed,
                    Event::Violation(end) => return end,
                },
                m = desktop.next() => match classify(m, &limits, &mut desktop_count) {
                    Event::Message(data) => {
                        let len = data.len();
                        if phone.send(Message::Binary(data.into())).await.is_err() {
                            return End::PhoneClosed;
                        }
                        inner.metrics.relayed(len);
                    }
                    Event::Ignore => {}
                    Event::Closed => return End::DesktopClosed,
                    Event::Violation(end) => return end,
                },
            }
        }
    };
    let end = bounded(deadline, &mut stop, async { Ok::<_, End>(relaying.await) })
        .await
        .unwrap_or_else(|e| e);
    drop(guard);
    finish(&inner, id, end, Some(&mut phone), Some(&mut desktop)).await;
}

/// `/cable/connect/<routing id>/<id>`: claims the waiting tunnel, answers
/// 101 and hands the WebSocket to the phone's task.
pub(super) async fn desktop(
    inner: Arc<Inner>,
    mut stream: MaybeTls,
    rest: Vec<u8>,
    id: TunnelId,
    accept: String,
    permit: OwnedSemaphorePermit,
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
    let ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(inner.ws_config()))
            .await;
    if let Err(mut joined) = tx.send(Joined {
        ws,
        _permit: permit,
    }) {
        // The phone left in between.
        close_ws(&mut joined.ws, End::PhoneClosed.close_frame()).await;
    }
}

/// Runs `fut` until it finishes, the tunnel's deadline passes or the server stops.
pub(super) async fn bounded<T>(
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
    fut: impl Future<Output = Result<T, End>>,
) -> Result<T, End> {
    tokio::select! {
        r = fut => r,
        () = tokio::time::sleep_until(deadline) => Err(End::Ttl),
        _ = stop.wait_for(|s| *s) => Err(End::Shutdown),
    }
}

/// Ends a tunnel: counts it and closes whichever sides are connected.
pub(super) async fn finish(
    inner: &Inner,
    id: TunnelId,
    end: End,
    phone: Option<&mut Ws>,
    desktop: Option<&mut Ws>,
) {
    tracing::debug!(tunnel = ?id, reason = end.label(), "tunnel ended");
    inner.metrics.ended(end);
    let frame = end.close_frame();
    let close_phone = async {
        if let Some(ws) = phone {
            close_ws(ws, frame.clone()).await;
        }
    };
    let close_desktop = async {
        if let Some(ws) = desktop {
            close_ws(ws, frame.clone()).await;
        }
    };
    tokio::join!(close_phone, close_desktop);
}

/// Sends a close frame and waits briefly for the peer's reply; bounded.
pub(super) async fn close_ws(ws: &mut Ws, frame: CloseFrame) {
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(Some(frame))).await;
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
    Message(Vec<u8>),
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
            Event::Message(data.to_vec())
        }
        Some(Ok(Message::Text(_))) => Event::Violation(End::TextFrame),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Event::Ignore,
        Some(Err(WsError::Capacity(_))) => Event::Violation(End::Oversize),
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
