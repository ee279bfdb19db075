//! A view of a real `bluetoothd` that shows one adapter only, for the
//! ble-vm's real-radio ceremonies (`tests/ble-vm`, `docs/interop.md`).
//!
//! Why: libwebauthn/pxp scan with "the first adapter" BlueZ lists (pxp
//! `ble.rs` `get_adapter`, "TODO(#86): Support multiple adapters"), and
//! that list comes from an unordered `GetManagedObjects` reply — so with the
//! phone's and the desktop's controllers on one `bluetoothd` it would pick
//! the phone's own controller half of the time, and a controller never hears
//! its own advert. This program owns `org.bluez` on a second private bus
//! (the desktop's) and forwards every method call to the real `bluetoothd`
//! on the first bus, and every signal back, except for the other adapters'
//! objects: the desktop sees exactly one adapter, and everything
//! it does (discovery, device properties, service data) is done by the real
//! `bluetoothd` on the real (virtual) controller. L2CAP sockets do not go
//! through D-Bus at all.
//!
//! ```text
//! interop-bluez-view --upstream ADDR --downstream ADDR --show hci1 [--ready-file F]
//! ```
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hybrid_interop_chromium::arg_value;
use zbus::message::{Header, Type};
use zbus::names::BusName;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Structure};
use zbus::{Connection, MatchRule, Message, MessageStream};

/// Bound on one forwarded call (D-Bus's own default reply timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(25);

type Managed = HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedValue>>>;

struct View {
    up: Connection,
    down: Connection,
    owner: String,
    /// The one adapter shown, e.g. `hci1`.
    shown: String,
}

impl View {
    /// Whether `path` is (under) an adapter other than the shown one.
    fn hides(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix("/org/bluez/") else {
            return false;
        };
        let adapter = rest.split('/').next().unwrap_or(rest);
        adapter.starts_with("hci") && adapter != self.shown
    }

    async fn forward_call(&self, call: Message) -> zbus::Result<()> {
        let h = call.header();
        let (Some(path), Some(member)) = (h.path(), h.member()) else {
            return Ok(());
        };
        if self.hides(path.as_str()) {
            return self
                .reply_error(&h, "org.freedesktop.DBus.Error.UnknownObject", "hidden")
                .await;
        }
        let iface = h.interface();
        let body = call.body();
        let owner = Some(self.owner.as_str());
        let sent = async {
            if body.signature().to_string().is_empty() {
                self.up.call_method(owner, path, iface, member, &()).await
            } else {
                let args: Structure<'_> = body.deserialize()?;
                self.up.call_method(owner, path, iface, member, &args).await
            }
        };
        let reply = match tokio::time::timeout(CALL_TIMEOUT, sent).await {
            Err(_) => {
                return self
                    .reply_error(
                        &h,
                        "org.freedesktop.DBus.Error.NoReply",
                        "bluetoothd timed out",
                    )
                    .await
            }
            Ok(Err(zbus::Error::MethodError(name, text, _))) => {
                return self
                    .reply_error(&h, name.as_str(), text.as_deref().unwrap_or(""))
                    .await
            }
            Ok(Err(e)) => {
                return self
                    .reply_error(&h, "org.freedesktop.DBus.Error.Failed", &e.to_string())
                    .await
            }
            Ok(Ok(r)) => r,
        };
        if member.as_str() == "GetManagedObjects" {
            let mut objects: Managed = reply.body().deserialize()?;
            objects.retain(|p, _| !self.hides(p.as_str()));
            return self.down.reply(&h, &(objects,)).await;
        }
        let rbody = reply.body();
        if rbody.signature().to_string().is_empty() {
            self.down.reply(&h, &()).await
        } else {
            let out: Structure<'_> = rbody.deserialize()?;
            self.down.reply(&h, &out).await
        }
    }

    async fn reply_error(&self, h: &Header<'_>, name: &str, text: &str) -> zbus::Result<()> {
        let name = zbus::names::ErrorName::try_from(name).unwrap_or_else(|_| {
            zbus::names::ErrorName::from_static_str_unchecked("org.freedesktop.DBus.Error.Failed")
        });
        self.down.reply_error(h, name, &text).await
    }

    async fn forward_signal(&self, sig: Message) -> zbus::Result<()> {
        let h = sig.header();
        let (Some(path), Some(iface), Some(member)) = (h.path(), h.interface(), h.member()) else {
            return Ok(());
        };
        if self.hides(path.as_str()) {
            return Ok(());
        }
        let body = sig.body();
        if body.signature().to_string().is_empty() {
            return self
                .down
                .emit_signal(None::<BusName<'_>>, path, iface, member, &())
                .await;
        }
        let args: Structure<'_> = body.deserialize()?;
        // InterfacesAdded/Removed name the object in their first argument.
        if let Some(zbus::zvariant::Value::ObjectPath(p)) = args.fields().first() {
            if self.hides(p.as_str()) {
                return Ok(());
            }
        }
        self.down
            .emit_signal(None::<BusName<'_>>, path, iface, member, &args)
            .await
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(upstream), Some(downstream), Some(show)) = (
        arg_value(&args, "--upstream"),
        arg_value(&args, "--downstream"),
        arg_value(&args, "--show"),
    ) else {
        eprintln!(
            "usage: interop-bluez-view --upstream ADDR --downstream ADDR --show hciN [--ready-file F]"
        );
        return ExitCode::from(2);
    };
    match run(
        &upstream,
        &downstream,
        &show,
        arg_value(&args, "--ready-file"),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop-bluez-view: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    upstream: &str,
    downstream: &str,
    show: &str,
    ready_file: Option<String>,
) -> zbus::Result<()> {
    let up = zbus::connection::Builder::address(upstream)?
        .build()
        .await?;
    let owner = zbus::fdo::DBusProxy::new(&up)
        .await?
        .get_name_owner(BusName::from_static_str("org.bluez")?)
        .await?
        .to_string();
    // Signals of bluetoothd, subscribed before we announce ourselves.
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(owner.as_str())?
        .build();
    let mut signals = MessageStream::for_match_rule(rule, &up, Some(1024)).await?;
    let down = zbus::connection::Builder::address(downstream)?
        .name("org.bluez")?
        .build()
        .await?;
    let view = Arc::new(View {
        up,
        down: down.clone(),
        owner,
        shown: show.to_owned(),
    });
    let mut calls = MessageStream::from(&down);
    println!("READY showing /org/bluez/{show} only");
    if let Some(f) = ready_file {
        std::fs::write(f, "ready\n").map_err(|e| zbus::Error::Failure(e.to_string()))?;
    }
    let v = Arc::clone(&view);
    tokio::spawn(async move {
        while let Some(Ok(sig)) = signals.next().await {
            if let Err(e) = v.forward_signal(sig).await {
                eprintln!("interop-bluez-view: signal: {e}");
            }
        }
    });
    while let Some(msg) = calls.next().await {
        let Ok(msg) = msg else { continue };
        if msg.message_type() != Type::MethodCall {
            continue;
        }
        let v = Arc::clone(&view);
        tokio::spawn(async move {
            if let Err(e) = v.forward_call(msg).await {
                eprintln!("interop-bluez-view: call: {e}");
            }
        });
    }
    Ok(())
}
