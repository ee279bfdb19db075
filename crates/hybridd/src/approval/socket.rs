//! The control-socket front-end: the prompt goes to the connected
//! `hybridd scan` client as `{"event": "prompt", …}`, the answer comes back
//! as `{"approve": …}` (relayed by [`crate::control::server`]).

use hybrid_ctap::UserError;
use tokio::sync::mpsc;

use crate::approval::{Answer, Approver};
use crate::control::DaemonMsg;
use crate::prompt::{Notice, Prompt};
use crate::BoxFuture;

/// Asks the connected `hybridd scan` client.
pub struct SocketApprover {
    events: mpsc::UnboundedSender<DaemonMsg>,
    answers: mpsc::UnboundedReceiver<Answer>,
}

impl std::fmt::Debug for SocketApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SocketApprover { .. }")
    }
}

impl SocketApprover {
    /// A front-end sending on `events` and answered through `answers`
    /// (closed when the client leaves).
    pub fn new(
        events: mpsc::UnboundedSender<DaemonMsg>,
        answers: mpsc::UnboundedReceiver<Answer>,
    ) -> Self {
        SocketApprover { events, answers }
    }
}

impl Approver for SocketApprover {
    fn ask<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Answer, UserError>> {
        Box::pin(async move {
            // An answer sent before this prompt (to an earlier one) is stale.
            while self.answers.try_recv().is_ok() {}
            if self.events.send(DaemonMsg::Prompt(prompt.clone())).is_err() {
                return Err(UserError::Cancelled);
            }
            self.answers.recv().await.ok_or(UserError::Cancelled)
        })
    }

    fn notify<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, ()> {
        let _ = self.events.send(DaemonMsg::Notice(notice.to_string()));
        Box::pin(std::future::ready(()))
    }
}
