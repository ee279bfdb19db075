//! The BlueZ advertiser against the fake `org.bluez` on a private dbus-daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // helpers of tests

use std::time::Duration;

use hybrid_ble::SERVICE_UUID;
use hybrid_bluez::fake::{FakeBluez, FakeEvent, FakeOptions, PrivateBus, PrivateBusError};
use hybrid_bluez::{bus_at, check, probe, scan, BluezAdvertiser, BluezConfig, BluezError};

const ADVERT: [u8; 20] = [
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe,
    0x00, 0xff, 0x7f, 0x80,
];

/// A private bus, or `None` (with a loud message) when dbus-daemon is missing
/// and `HYBRIDD_REQUIRE_DBUS=1` is not set.
fn private_bus(test: &str) -> Option<PrivateBus> {
    match PrivateBus::start() {
        Ok(b) => Some(b),
        Err(PrivateBusError::NotInstalled(e))
            if std::env::var("HYBRIDD_REQUIRE_DBUS").as_deref() != Ok("1") =>
        {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: dbus-daemon is not installed ({e}).\n\
                 !!!!!!!! apt-get install dbus-daemon, or set HYBRIDD_REQUIRE_DBUS=1 to fail instead.\n"
            );
            None
        }
        Err(e) => panic!("{test}: cannot start a private dbus-daemon: {e}"),
    }
}

async fn setup(test: &str, opts: FakeOptions) -> Option<(PrivateBus, FakeBluez, BluezAdvertiser)> {
    let bus = private_bus(test)?;
    let fake = FakeBluez::start(bus.address(), opts).await.unwrap();
    let conn = bus_at(bus.address()).await.unwrap();
    let adv = BluezAdvertiser::new(conn, BluezConfig::default());
    Some((bus, fake, adv))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_registers_exactly_the_advert_and_stop_unregisters() {
    let Some((_bus, fake, mut adv)) = setup("start_stop", FakeOptions::default()).await else {
        return;
    };
    adv.start_advert(&ADVERT).await.unwrap();
    let path = adv.current_path().unwrap().to_owned();
    assert!(path.starts_with(hybrid_bluez::ADVERT_PATH_PREFIX));
    assert_eq!(adv.adapter().unwrap().name, "hci0");

    let regs = fake.registrations();
    assert_eq!(regs.len(), 1);
    let r = &regs[0];
    assert_eq!(r.path, path);
    assert!(r.options.is_empty(), "options: {:?}", r.options);
    assert_eq!(r.string("Type").as_deref(), Some("broadcast"));
    assert_eq!(
        r.strings("ServiceUUIDs"),
        Some(vec![SERVICE_UUID.to_owned()])
    );
    assert_eq!(r.service_data_keys(), vec![SERVICE_UUID.to_owned()]);
    assert_eq!(r.service_data(SERVICE_UUID).as_deref(), Some(&ADVERT[..]));
    assert_eq!(r.u32("MinInterval"), Some(100));
    assert_eq!(r.u32("MaxInterval"), Some(100));
    assert_eq!(
        r.property_names(),
        [
            "MaxInterval",
            "MinInterval",
            "ServiceData",
            "ServiceUUIDs",
            "Type"
        ],
        "no LocalName, Includes, TxPower, Appearance, ManufacturerData..."
    );
    assert_eq!(fake.active_paths(), vec![path.clone()]);

    adv.stop_advert().await.unwrap();
    assert!(adv.current_path().is_none());
    assert!(fake.active_paths().is_empty());
    assert_eq!(
        fake.events(),
        vec![
            FakeEvent::Registered { path: path.clone() },
            FakeEvent::Unregistered { path: path.clone() }
        ]
    );
    // The object is gone from our connection.
    let gone = zbus::fdo::PropertiesProxy::builder(fake.connection())
        .destination(regs[0].sender.clone())
        .unwrap()
        .path(path.clone())
        .unwrap()
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
        .get_all(
            zbus::names::InterfaceName::from_static_str(hybrid_bluez::LE_ADVERTISEMENT1).unwrap(),
        )
        .await;
    assert!(gone.is_err(), "object still exported: {gone:?}");
    // Stopping twice is fine.
    adv.stop_advert().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_intervals_only_the_three_properties() {
    let Some(bus) = private_bus("no_intervals") else {
        return;
    };
    let fake = FakeBluez::start(bus.address(), FakeOptions::default())
        .await
        .unwrap();
    let conn = bus_at(bus.address()).await.unwrap();
    let mut adv = BluezAdvertiser::new(
        conn,
        BluezConfig {
            adapter: Some("hci0".into()),
            interval_ms: None,
        },
    );
    adv.start_advert(&ADVERT).await.unwrap();
    let regs = fake.registrations();
    assert_eq!(
        regs[0].property_names(),
        ["ServiceData", "ServiceUUIDs", "Type"]
    );
    adv.stop_advert().await.unwrap();
}

/// CTAP 2.3 (`hybrid-ble-l2cap.md` §2): only when asked, a connectable
/// advert whose service data is the 20 bytes and `{1: PSM}`, without a UUID
/// list (so flags + service data fit a legacy PDU); the plain advert after it
/// is exactly as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_l2cap_advert_is_connectable_with_the_psm_suffix_and_only_when_asked() {
    let Some((_bus, fake, mut adv)) = setup("psm_advert", FakeOptions::default()).await else {
        return;
    };
    adv.start_advert_with_psm(&ADVERT, 0x82).await.unwrap();
    let regs = fake.registrations();
    let r = &regs[0];
    assert_eq!(r.string("Type").as_deref(), Some("peripheral"));
    assert_eq!(r.strings("ServiceUUIDs"), Some(vec![]));
    let mut want = ADVERT.to_vec();
    want.extend_from_slice(&[0xa1, 0x01, 0x18, 0x82]);
    assert_eq!(r.service_data(SERVICE_UUID), Some(want));
    assert_eq!(r.service_data_keys(), vec![SERVICE_UUID.to_owned()]);
    // PSM 0 is refused before anything reaches BlueZ.
    assert!(matches!(
        adv.start_advert_with_psm(&ADVERT, 0).await,
        Err(BluezError::L2capSetup { .. })
    ));
    // The plain advert: non-connectable, UUID list, exactly 20 bytes.
    adv.start_advert(&ADVERT).await.unwrap();
    let regs = fake.registrations();
    let r = regs.last().unwrap();
    assert_eq!(r.string("Type").as_deref(), Some("broadcast"));
    assert_eq!(
        r.strings("ServiceUUIDs"),
        Some(vec![SERVICE_UUID.to_owned()])
    );
    assert_eq!(r.service_data(SERVICE_UUID).as_deref(), Some(&ADVERT[..]));
    adv.stop_advert().await.unwrap();
    assert!(fake.active_paths().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_start_uses_a_fresh_path_and_replaces_the_old_advert() {
    let Some((_bus, fake, mut adv)) = setup("fresh_path", FakeOptions::default()).await else {
        return;
    };
    adv.start_advert(&ADVERT).await.unwrap();
    let first = adv.current_path().unwrap().to_owned();
    let mut second_advert = ADVERT;
    second_advert[0] ^= 0xff;
    adv.start_advert(&second_advert).await.unwrap();
    let second = adv.current_path().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(fake.active_paths(), vec![second.clone()]);
    let regs = fake.registrations();
    assert_eq!(regs.len(), 2);
    assert_eq!(
        regs[1].service_data(SERVICE_UUID).as_deref(),
        Some(&second_advert[..])
    );
    assert_eq!(
        fake.events(),
        vec![
            FakeEvent::Registered {
                path: first.clone()
            },
            FakeEvent::Unregistered { path: first },
            FakeEvent::Registered {
                path: second.clone()
            },
        ]
    );
    adv.stop_advert().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_the_adapter_for_doctor() {
    let Some((_bus, _fake, mut adv)) = setup("probe", FakeOptions::default()).await else {
        return;
    };
    let info = check(adv.connection(), None).await.unwrap();
    assert_eq!(info.name, "hci0");
    assert_eq!(info.path, "/org/bluez/hci0");
    assert_eq!(info.address.as_deref(), Some("00:00:5E:00:53:01"));
    assert_eq!(info.address_type.as_deref(), Some("public"));
    assert!(info.powered && info.le_advertising);
    assert_eq!(
        (info.active_instances, info.supported_instances),
        (Some(0), Some(4))
    );
    adv.start_advert(&ADVERT).await.unwrap();
    let info = probe(adv.connection(), Some("hci0")).await.unwrap();
    assert_eq!(
        (info.active_instances, info.supported_instances),
        (Some(1), Some(3))
    );
    assert!(info.problem().is_none());
    adv.stop_advert().await.unwrap();
}

async fn start_error(test: &str, opts: FakeOptions, config: BluezConfig) -> Option<BluezError> {
    let bus = private_bus(test)?;
    let fake = FakeBluez::start(bus.address(), opts).await.unwrap();
    let conn = bus_at(bus.address()).await.unwrap();
    let mut adv = BluezAdvertiser::new(conn, config);
    let err = adv.start_advert(&ADVERT).await.unwrap_err();
    assert!(adv.current_path().is_none());
    assert!(fake.registrations().is_empty());
    Some(err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_adapter() {
    let opts = FakeOptions {
        adapter: false,
        ..FakeOptions::default()
    };
    let Some(err) = start_error("no_adapter", opts, BluezConfig::default()).await else {
        return;
    };
    assert_eq!(err, BluezError::NoAdapter);
    assert!(
        err.to_string().contains("no Bluetooth adapter found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_adapter_missing() {
    let config = BluezConfig {
        adapter: Some("hci7".into()),
        ..BluezConfig::default()
    };
    let Some(err) = start_error("adapter_missing", FakeOptions::default(), config).await else {
        return;
    };
    assert_eq!(
        err,
        BluezError::AdapterNotFound {
            wanted: "hci7".into(),
            available: "hci0".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powered_off() {
    let opts = FakeOptions {
        powered: false,
        ..FakeOptions::default()
    };
    let Some(err) = start_error("powered_off", opts, BluezConfig::default()).await else {
        return;
    };
    assert_eq!(
        err,
        BluezError::PoweredOff {
            adapter: "hci0".into()
        }
    );
    assert!(
        err.to_string()
            .contains("adapter hci0 is powered off: bluetoothctl power on"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_le_advertising() {
    let opts = FakeOptions {
        le_advertising: false,
        ..FakeOptions::default()
    };
    let Some(err) = start_error("no_le", opts, BluezConfig::default()).await else {
        return;
    };
    assert_eq!(
        err,
        BluezError::NoLeAdvertising {
            adapter: "hci0".into()
        }
    );
    assert!(
        err.to_string()
            .contains("controller hci0 cannot do LE advertising"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_instances_means_no_le_advertising() {
    let opts = FakeOptions {
        max_instances: 0,
        ..FakeOptions::default()
    };
    let Some(err) = start_error("zero_instances", opts, BluezConfig::default()).await else {
        return;
    };
    assert_eq!(
        err,
        BluezError::NoLeAdvertising {
            adapter: "hci0".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_instances_busy() {
    let opts = FakeOptions {
        max_instances: 1,
        ..FakeOptions::default()
    };
    let Some((bus, _fake, mut first)) = setup("busy", opts).await else {
        return;
    };
    first.start_advert(&ADVERT).await.unwrap();
    let conn = bus_at(bus.address()).await.unwrap();
    let mut second = BluezAdvertiser::new(conn, BluezConfig::default());
    let err = second.start_advert(&ADVERT).await.unwrap_err();
    assert_eq!(
        err,
        BluezError::NoFreeInstance {
            adapter: "hci0".into(),
            active: 1
        }
    );
    first.stop_advert().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bluetoothd_on_the_bus() {
    let Some(bus) = private_bus("no_bluetoothd") else {
        return;
    };
    let conn = bus_at(bus.address()).await.unwrap();
    let mut adv = BluezAdvertiser::new(conn.clone(), BluezConfig::default());
    let err = adv.start_advert(&ADVERT).await.unwrap_err();
    assert!(matches!(err, BluezError::NoBluetoothd { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("bluetoothd is not running: sudo systemctl start bluetooth"),
        "{err}"
    );
    let err = probe(&conn, None).await.unwrap_err();
    assert!(matches!(err, BluezError::NoBluetoothd { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_system_bus_at_all() {
    let err = bus_at("unix:path=/nonexistent/hybridd-test/bus")
        .await
        .unwrap_err();
    assert!(matches!(err, BluezError::NoSystemBus { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("no D-Bus system bus: Bluetooth is unavailable on this machine"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_by_bluez_is_noticed_and_stop_still_succeeds() {
    let Some((_bus, fake, mut adv)) = setup("release", FakeOptions::default()).await else {
        return;
    };
    adv.start_advert(&ADVERT).await.unwrap();
    assert!(!adv.was_released());
    fake.set_powered(false).await.unwrap();
    for _ in 0..100 {
        if adv.was_released() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(adv.was_released());
    adv.stop_advert().await.unwrap();
    let err = adv.start_advert(&ADVERT).await.unwrap_err();
    assert_eq!(
        err,
        BluezError::PoweredOff {
            adapter: "hci0".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_sees_exactly_the_registered_service_data() {
    let Some((bus, fake, mut adv)) = setup("scanner", FakeOptions::default()).await else {
        return;
    };
    let scanner = bus_at(bus.address()).await.unwrap();
    let mut second_advert = ADVERT;
    second_advert[19] = 0x42;
    let expect = second_advert;
    let watch = tokio::spawn(async move {
        let mut seen = Vec::new();
        let got = scan::watch_service_data(
            &scanner,
            Some("hci0"),
            SERVICE_UUID,
            Duration::from_secs(10),
            |_, bytes| {
                seen.push(bytes.to_vec());
                bytes == expect
            },
        )
        .await;
        (got, seen)
    });
    // Wait until the scanner runs discovery, then advertise twice: the first
    // advert arrives as InterfacesAdded, the second as PropertiesChanged.
    for _ in 0..200 {
        if fake
            .events()
            .iter()
            .any(|e| matches!(e, FakeEvent::StartDiscovery { .. }))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    adv.start_advert(&ADVERT).await.unwrap();
    adv.start_advert(&second_advert).await.unwrap();
    let (got, seen) = watch.await.unwrap();
    assert_eq!(got.unwrap().as_deref(), Some(&second_advert[..]));
    assert_eq!(
        seen.first().map(Vec::as_slice),
        Some(&ADVERT[..]),
        "seen: {seen:02x?}"
    );
    let events = fake.events();
    assert!(events.contains(&FakeEvent::SetDiscoveryFilter {
        keys: vec!["DuplicateData".into(), "Transport".into()]
    }));
    assert!(events
        .iter()
        .any(|e| matches!(e, FakeEvent::StopDiscovery { .. })));
    adv.stop_advert().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_through_the_hybrid_ble_advertiser_trait() {
    use hybrid_ble::{Advertiser, AdvertiserError};
    let Some(bus) = private_bus("trait") else {
        return;
    };
    let fake = FakeBluez::start(bus.address(), FakeOptions::default())
        .await
        .unwrap();
    let conn = bus_at(bus.address()).await.unwrap();
    let mut radio: Box<dyn Advertiser> =
        Box::new(BluezAdvertiser::new(conn, BluezConfig::default()));
    radio.start(&ADVERT).await.unwrap();
    assert_eq!(
        fake.registrations()[0]
            .service_data(SERVICE_UUID)
            .as_deref(),
        Some(&ADVERT[..])
    );
    radio.stop().await.unwrap();
    assert!(fake.active_paths().is_empty());

    fake.set_powered(false).await.unwrap();
    let err = radio.start(&ADVERT).await.unwrap_err();
    assert_eq!(
        err,
        AdvertiserError::PoweredOff {
            adapter: "hci0".into()
        }
    );
    // Other errors keep their fix text.
    let e: AdvertiserError = BluezError::NoBluetoothd { detail: "x".into() }.into();
    assert_eq!(e.fix(), "sudo systemctl start bluetooth");
}

/// Like bluetoothd under `DuplicateData`, the fake follows the device's
/// `InterfacesAdded` with a `PropertiesChanged` carrying the same
/// `ServiceData`: btleplug (bluez-async) reads service data only from
/// `PropertiesChanged` (webauthn-rs's caBLE initiator scans with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_advert_also_arrives_as_properties_changed() {
    use futures_util::StreamExt;
    use std::collections::HashMap;
    use zbus::zvariant::OwnedValue;

    let Some((bus, _fake, mut adv)) = setup("props_changed", FakeOptions::default()).await else {
        return;
    };
    let scanner = bus_at(bus.address()).await.unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.DBus.Properties")
        .unwrap()
        .member("PropertiesChanged")
        .unwrap()
        .path(hybrid_bluez::fake::FAKE_DEVICE_PATH)
        .unwrap()
        .build();
    let mut signals = zbus::MessageStream::for_match_rule(rule, &scanner, Some(64))
        .await
        .unwrap();
    scanner
        .call_method(
            Some("org.bluez"),
            hybrid_bluez::fake::FAKE_ADAPTER_PATH,
            Some("org.bluez.Adapter1"),
            "StartDiscovery",
            &(),
        )
        .await
        .unwrap();
    adv.start_advert(&ADVERT).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(msg)) = signals.next().await {
            let Ok((iface, props, _)) =
                msg.body()
                    .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
            else {
                continue;
            };
            if iface != "org.bluez.Device1" {
                continue;
            }
            if let Some(sd) = props.get("ServiceData") {
                return scan::service_data_bytes(sd, SERVICE_UUID);
            }
        }
        None
    })
    .await
    .expect("no PropertiesChanged with ServiceData within 5 s");
    assert_eq!(got.as_deref(), Some(&ADVERT[..]));
    adv.stop_advert().await.unwrap();
}

/// As on a real scanning machine, a found device stays while discovery runs
/// even when the phone's advert stops or is swapped for the next one (its
/// `Device1` keeps the last service data); it goes when discovery stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_stays_while_discovering_when_adverts_pause() {
    use std::collections::HashMap;
    use zbus::zvariant::OwnedValue;

    let Some((bus, _fake, mut adv)) = setup("device_stays", FakeOptions::default()).await else {
        return;
    };
    let scanner = bus_at(bus.address()).await.unwrap();
    let adapter_call = |method: &'static str| {
        let scanner = scanner.clone();
        async move {
            scanner
                .call_method(
                    Some("org.bluez"),
                    hybrid_bluez::fake::FAKE_ADAPTER_PATH,
                    Some("org.bluez.Adapter1"),
                    method,
                    &(),
                )
                .await
                .unwrap();
        }
    };
    // The device's service data under 0xFFF9, or None when it is not exported.
    let device_data = || {
        let scanner = scanner.clone();
        async move {
            let reply = scanner
                .call_method(
                    Some("org.bluez"),
                    hybrid_bluez::fake::FAKE_DEVICE_PATH,
                    Some("org.freedesktop.DBus.Properties"),
                    "GetAll",
                    &("org.bluez.Device1",),
                )
                .await
                .ok()?;
            let props: HashMap<String, OwnedValue> = reply.body().deserialize().unwrap();
            scan::service_data_bytes(props.get("ServiceData")?, SERVICE_UUID)
        }
    };
    let mut second = ADVERT;
    second[0] = 0x99;

    adapter_call("StartDiscovery").await;
    assert_eq!(device_data().await, None, "no advert yet");
    adv.start_advert(&ADVERT).await.unwrap();
    assert_eq!(device_data().await.as_deref(), Some(&ADVERT[..]));
    adv.stop_advert().await.unwrap();
    assert_eq!(
        device_data().await.as_deref(),
        Some(&ADVERT[..]),
        "the device must stay, with its last data, while discovery runs"
    );
    adv.start_advert(&second).await.unwrap();
    assert_eq!(device_data().await.as_deref(), Some(&second[..]));
    adapter_call("StopDiscovery").await;
    assert_eq!(device_data().await, None, "gone once discovery stopped");
    adv.stop_advert().await.unwrap();
}
