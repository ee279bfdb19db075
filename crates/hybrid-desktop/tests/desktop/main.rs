//! hybrid-desktop against the real components, started by the tests on
//! private buses and in private directories (see `hybrid_desktop::testing`).
//! Each test's name starts with the component it exercises: `notification_`
//! (dunst), `fprintd_`, `pinentry_` (pinentry-tty), `logind_` (a fake
//! org.freedesktop.login1), `xdg_open_`.
//!
//! A missing component skips its tests loudly, or fails them when
//! `HYBRIDD_REQUIRE_DESKTOP=1` (as `.ci/run` sets).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod fprintd;
mod logind;
mod notification;
mod pinentry;
mod xdg_open;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The most any one test may take, whatever happens.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// A deadline `secs` from now.
fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// Runs a test body with [`TEST_LIMIT`].
async fn bounded<F: Future<Output = ()>>(test: &str, body: F) {
    if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
        panic!("{test}: did not finish within {} s", TEST_LIMIT.as_secs());
    }
}
