//! Reading whichever leg of a tunnel has something, polling only the legs
//! that were woken.
//!
//! A `select!` over both WebSockets polls both on every wake of the task,
//! so each relayed message also polled the idle leg: its waker
//! registration, its frame-timeout guard, and tungstenite zero-filling its
//! read buffer before the read that then finds nothing (perf, relay phase:
//! `memset` 3.8 %, waker registration 2.4 %, `poll_next` 2.7 % of the
//! server's CPU; docs/performance.md). Here each leg is polled with a waker
//! of its own that marks the leg as woken before waking the task, and a leg
//! is polled again only once it has been woken (or right after it yielded
//! something, since more may be buffered). Measured: about 2 % of the
//! server's CPU in the relay phase (`poll_next` 2.9 % → 1 %), at the edge
//! of the benchmark's noise.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use futures_util::StreamExt;

use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Ws;

/// Which leg an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Phone,
    Desktop,
}

/// A leg's waker: records that the leg was woken, then wakes the task.
#[derive(Default)]
struct Mark {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Mark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

struct LegWaker {
    mark: Arc<Mark>,
    waker: Waker,
}

impl LegWaker {
    fn new() -> Self {
        let mark = Arc::new(Mark::default());
        // Not polled yet: counts as woken.
        mark.woken.store(true, Ordering::Relaxed);
        let waker = Waker::from(mark.clone());
        Self { mark, waker }
    }

    /// Polls `ws` if its leg was woken since it last returned `Pending`.
    fn poll(&self, ws: &mut Ws, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        // Registered before the flag is read: a wake from here on wakes the task.
        self.mark.task.register(cx.waker());
        if !self.mark.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let polled = ws.poll_next_unpin(&mut Context::from_waker(&self.waker));
        if polled.is_ready() {
            // More may be buffered already: poll again next time.
            self.mark.woken.store(true, Ordering::Release);
        }
        polled
    }
}

/// Both legs' wakers, and whose turn it is to be polled first.
pub(super) struct Legs {
    phone: LegWaker,
    desktop: LegWaker,
    desktop_first: bool,
}

impl Legs {
    pub(super) fn new() -> Self {
        Self {
            phone: LegWaker::new(),
            desktop: LegWaker::new(),
            desktop_first: false,
        }
    }

    /// The next item of either leg, taking turns when both have one.
    pub(super) async fn next(
        &mut self,
        phone: &mut Ws,
        desktop: &mut Ws,
    ) -> (Side, Option<Result<Message, WsError>>) {
        poll_fn(|cx| {
            self.desktop_first = !self.desktop_first;
            let order = if self.desktop_first {
                [Side::Desktop, Side::Phone]
            } else {
                [Side::Phone, Side::Desktop]
            };
            for side in order {
                let polled = match side {
                    Side::Phone => self.phone.poll(phone, cx),
                    Side::Desktop => self.desktop.poll(desktop, cx),
                };
                if let Poll::Ready(m) = polled {
                    return Poll::Ready((side, m));
                }
            }
            Poll::Pending
        })
        .await
    }
}
