//! The control server over real sockets: sessions, busy, hand-off, limits.

use super::*;
use crate::approval::Approver;
use crate::control::{Client, Event};
use crate::prompt::Prompt;
use tokio::io::AsyncWriteExt;

#[test]
fn only_the_same_uid_is_served() {
    assert!(peer_allowed(1000, 1000));
    assert!(!peer_allowed(0, 1000));
    assert!(!peer_allowed(1001, 1000));
}

fn test_runner(hold: Arc<tokio::sync::Notify>) -> Runner {
    Arc::new(move |mut req: SessionRequest| {
        let hold = hold.clone();
        Box::pin(async move {
            let _ = req.events.send(DaemonMsg::Event(Event::TunnelOpen));
            let uri = req.uri.to_string();
            let request = crate::prompt::sample_request(hybrid_ctap::Command::GetAssertion);
            let answer = req.approver.ask(&Prompt::new(&request, true)).await;
            tokio::select! {
                _ = hold.notified() => {}
                _ = req.cancel.changed() => {}
            }
            Done {
                ok: matches!(answer, Ok(Answer::Approve(Some(ref p))) if p.as_str() == "1234"),
                outcome: "completed".into(),
                message: uri,
            }
        })
    })
}

fn serve(
    dir: &tempfile::TempDir,
    runner: Runner,
) -> (PathBuf, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let path = dir.path().join("run").join("control.sock");
    let listener = bind(&path).unwrap();
    let server = Server::new(listener, path.clone(), runner);
    let (sd_tx, sd_rx) = watch::channel(false);
    let task = tokio::spawn(server.run(sd_rx));
    (path, sd_tx, task)
}

#[tokio::test]
async fn scan_prompt_busy_done_over_a_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    let hold = Arc::new(tokio::sync::Notify::new());
    let (path, sd_tx, task) = serve(&dir, test_runner(hold.clone()));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    let mut a = Client::connect(&path).await.unwrap();
    a.send(&ClientMsg::Scan(Zeroizing::new("FIDO:/1".into())))
        .await
        .unwrap();
    assert_eq!(
        a.recv().await.unwrap(),
        Some(DaemonMsg::Event(Event::TunnelOpen))
    );
    let Some(DaemonMsg::Prompt(p)) = a.recv().await.unwrap() else {
        panic!("no prompt")
    };
    assert_eq!(p.action.text(), "sign in");

    // A second client while the first session runs: busy at once.
    let mut b = Client::connect(&path).await.unwrap();
    b.send(&ClientMsg::Scan(Zeroizing::new("FIDO:/2".into())))
        .await
        .unwrap();
    assert_eq!(
        b.recv().await.unwrap(),
        Some(DaemonMsg::Busy(BUSY_MESSAGE.into()))
    );
    b.send(&ClientMsg::Ping).await.unwrap();
    assert!(matches!(
        b.recv().await.unwrap(),
        Some(DaemonMsg::Pong(Pong { busy: true, .. }))
    ));

    a.send(&ClientMsg::Approve {
        approve: true,
        pin: Some(Zeroizing::new("1234".into())),
    })
    .await
    .unwrap();
    hold.notify_one();
    let Some(DaemonMsg::Done(d)) = a.recv().await.unwrap() else {
        panic!("no done")
    };
    assert!(d.ok);
    assert_eq!(d.message, "FIDO:/1");
    // A session's done is its connection's last line: the daemon closed it.
    let end = tokio::time::timeout(Duration::from_secs(10), a.recv()).await;
    assert_eq!(
        end.expect("the daemon did not close the connection after done")
            .unwrap(),
        None
    );

    // Ready for the next one (after busy, on the same connection).
    b.send(&ClientMsg::Scan(Zeroizing::new("FIDO:/3".into())))
        .await
        .unwrap();
    assert_eq!(
        b.recv().await.unwrap(),
        Some(DaemonMsg::Event(Event::TunnelOpen))
    );
    // Client b disappears mid-session: the session is cancelled, the slot freed.
    drop(b);
    let mut c = Client::connect(&path).await.unwrap();
    let mut busy = true;
    for _ in 0..100 {
        c.send(&ClientMsg::Ping).await.unwrap();
        if let Some(DaemonMsg::Pong(p)) = c.recv().await.unwrap() {
            busy = p.busy;
        }
        if !busy {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!busy, "slot not freed after the client left");

    sd_tx.send(true).unwrap();
    task.await.unwrap();
    assert!(!path.exists(), "socket removed at shutdown");
}

/// A runner that reports, on `out`, when its prompt can no longer be
/// answered over the socket ("asked"), then whether it was cancelled
/// before `hold` let it finish.
fn leaving_runner(
    hold: Arc<tokio::sync::Notify>,
    out: mpsc::UnboundedSender<&'static str>,
) -> Runner {
    Arc::new(move |mut req: SessionRequest| {
        let (hold, out) = (hold.clone(), out.clone());
        Box::pin(async move {
            let _ = req.events.send(DaemonMsg::Event(Event::TunnelOpen));
            let request = crate::prompt::sample_request(hybrid_ctap::Command::GetAssertion);
            let _ = req.approver.ask(&Prompt::new(&request, true)).await;
            let _ = out.send("asked");
            let outcome = tokio::select! {
                biased;
                _ = req.cancel.changed() => "cancelled",
                _ = hold.notified() => "completed",
            };
            let _ = out.send(outcome);
            Done {
                ok: outcome == "completed",
                outcome: outcome.into(),
                message: String::new(),
            }
        })
    })
}

/// A client that hands the QR over (`hybridd scan --detach`, a
/// `FIDO:/` link) may leave once the session is under way: the session
/// goes on. A desktop-asked client that waits for the outcome cancels
/// it by leaving, as a terminal client does.
#[tokio::test]
async fn a_handed_off_session_outlives_its_client_a_waiting_one_does_not() {
    let bound = Duration::from_secs(20);
    for (msg, expect) in [
        (
            ClientMsg::HandOff(Zeroizing::new("FIDO:/1".into())),
            "completed",
        ),
        (
            ClientMsg::DesktopScan(Zeroizing::new("FIDO:/1".into())),
            "cancelled",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let hold = Arc::new(tokio::sync::Notify::new());
        let (out_tx, mut out) = mpsc::unbounded_channel();
        let (path, sd_tx, task) = serve(&dir, leaving_runner(hold.clone(), out_tx));
        let mut a = Client::connect(&path).await.unwrap();
        a.send(&msg).await.unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Some(DaemonMsg::Event(Event::TunnelOpen))
        );
        drop(a);
        let step = |r: Result<Option<&'static str>, _>| r.ok().flatten();
        assert_eq!(
            step(tokio::time::timeout(bound, out.recv()).await),
            Some("asked")
        );
        hold.notify_one();
        assert_eq!(
            step(tokio::time::timeout(bound, out.recv()).await),
            Some(expect),
            "{msg:?}"
        );
        sd_tx.send(true).unwrap();
        task.await.unwrap();
    }
}

/// Issue 16: at most [`MAX_CONNECTIONS`] connections are served at
/// once; one more is answered "too many" and closed, and a place freed
/// by a client leaving is usable again.
#[tokio::test]
async fn control_connections_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let hold = Arc::new(tokio::sync::Notify::new());
    let (path, sd_tx, task) = serve(&dir, test_runner(hold));
    let mut open = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut c = Client::connect(&path).await.unwrap();
        c.send(&ClientMsg::Ping).await.unwrap();
        assert!(matches!(c.recv().await.unwrap(), Some(DaemonMsg::Pong(_))));
        open.push(c);
    }
    let mut extra = Client::connect(&path).await.unwrap();
    assert_eq!(
        extra.recv().await.unwrap(),
        Some(DaemonMsg::Error(TOO_MANY_CONNECTIONS.into()))
    );
    assert_eq!(extra.recv().await.unwrap(), None, "closed");
    // One leaves: its place is free once the server has seen it go.
    drop(open.pop());
    let served = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut c = Client::connect(&path).await.unwrap();
            let _ = c.send(&ClientMsg::Ping).await;
            if let Ok(Some(DaemonMsg::Pong(_))) = c.recv().await {
                return c;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(served.is_ok(), "the freed place was never served");
    sd_tx.send(true).unwrap();
    task.await.unwrap();
}

/// A line over the limit is refused without reading it to its end.
#[tokio::test]
async fn an_overlong_line_is_refused_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let hold = Arc::new(tokio::sync::Notify::new());
    let (path, sd_tx, task) = serve(&dir, test_runner(hold));
    let stream = UnixStream::connect(&path).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    // A line a little over the limit, then its newline.
    let mut line = vec![b'x'; MAX_LINE + 4096];
    line.push(b'\n');
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&line).await;
        wr
    });
    let mut lines = LineReader::new(rd, MAX_LINE);
    let first = lines.next_line().await.unwrap().unwrap();
    assert_eq!(
        DaemonMsg::parse(&first).unwrap(),
        DaemonMsg::Error("line too long".into())
    );
    assert!(lines.next_line().await.unwrap().is_none(), "closed");
    drop(writer.await.unwrap());
    sd_tx.send(true).unwrap();
    task.await.unwrap();
}
