//! The terminal front-end (`hybridd scan --standalone`, and the `hybridd
//! scan` client answering the daemon's prompt): the prompt on standard
//! error, "Approve? [y/N]" read from the controlling terminal, then the
//! PIN without echo — all asynchronous ([`Tty`]).
//!
//! Without a controlling terminal the y/N answer is read from standard
//! input (tokio's stdin; a file or pipe cannot be polled) and a PIN cannot
//! be asked for: such an approval is cancelled.

use std::io::Write;

use hybrid_ctap::UserError;
use zeroize::Zeroizing;

use crate::approval::tty::Tty;
use crate::approval::{Answer, Approver};
use crate::control::LineReader;
use crate::prompt::{Notice, Prompt};
use crate::BoxFuture;

/// Asks on the controlling terminal.
#[derive(Debug, Default)]
pub struct TerminalApprover;

impl Approver for TerminalApprover {
    fn ask<'a>(&'a mut self, prompt: &'a Prompt) -> BoxFuture<'a, Result<Answer, UserError>> {
        Box::pin(ask(prompt))
    }

    fn notify<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, ()> {
        // Daemon text, but it may quote an error: the one sanitizer.
        let text = crate::peer_text::for_terminal(&notice.to_string(), 512);
        match notice {
            // The question's line is still open.
            Notice::NoAnswerInTime => eprintln!("\n{text}"),
            _ => eprintln!("{text}"),
        }
        Box::pin(std::future::ready(()))
    }
}

async fn ask(prompt: &Prompt) -> Result<Answer, UserError> {
    eprint!("{}Approve? [y/N] ", prompt.describe());
    let _ = std::io::stderr().flush();
    let tty = Tty::open().ok();
    let line = match &tty {
        Some(tty) => tty.read_line().await.ok(),
        None => read_stdin_line().await,
    };
    let line = line.ok_or(UserError::Cancelled)?;
    if !matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        return Ok(Answer::Decline);
    }
    if !prompt.needs_pin {
        return Ok(Answer::Approve(None));
    }
    let tty = tty.ok_or(UserError::Cancelled)?;
    let pin = tty
        .read_secret("PIN: ")
        .await
        .map_err(|_| UserError::Cancelled)?;
    Ok(Answer::Approve(Some(pin)))
}

async fn read_stdin_line() -> Option<Zeroizing<String>> {
    let mut lines = LineReader::new(tokio::io::stdin(), 1024);
    lines.next_line().await.ok().flatten()
}
