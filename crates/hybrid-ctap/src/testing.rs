//! Deterministic test doubles for every seam (OpenSK's `env/test` idea):
//! an in-memory [`MemStore`], a [`FakeClock`] and a [`SeededRng`], bundled
//! as [`TestEnv`] (generic over the store, so benches and tests can put the
//! real vault behind the same doubles), plus a [`ScriptedUser`] that
//! answers the approvals [`Authenticator::process`] yields
//! ([`Authenticator::process_scripted`]). For tests, fuzzing and benches
//! only — the RNG is deterministic and **must never** be used for real keys.

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::authenticator::{Authenticator, Config};
use crate::env::{Approval, ApprovalRequest, Clock, EnvParts, RequestContext, UserError};
use crate::step::{Reply, Step};
use crate::store::{CredentialMeta, CredentialSecrets, CredentialStore, StoreError};

/// An in-memory [`CredentialStore`].
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// Credentials in insertion order (oldest first).
    pub credentials: Vec<(CredentialMeta, CredentialSecrets)>,
    /// Maximum number of credentials (`None` = unlimited).
    pub capacity: Option<usize>,
    /// When true, `secrets` answers `Locked`.
    pub locked: bool,
    /// When true, every operation fails with `Backend`.
    pub broken: bool,
}

impl MemStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.broken {
            return Err(StoreError::Backend("test store broken".into()));
        }
        Ok(())
    }

    /// The stored metadata of `id`.
    pub fn meta(&self, id: &[u8]) -> Option<&CredentialMeta> {
        self.credentials.iter().map(|(m, _)| m).find(|m| m.id == id)
    }
}

impl CredentialStore for MemStore {
    fn find(
        &self,
        rp_id: &str,
        ids: Option<&[Vec<u8>]>,
    ) -> Result<Vec<CredentialMeta>, StoreError> {
        self.check()?;
        Ok(self
            .credentials
            .iter()
            .rev()
            .map(|(m, _)| m)
            .filter(|m| m.rp_id == rp_id)
            .filter(|m| match ids {
                Some(ids) => ids.contains(&m.id),
                None => m.discoverable,
            })
            .cloned()
            .collect())
    }

    fn insert(
        &mut self,
        meta: &CredentialMeta,
        secrets: &CredentialSecrets,
    ) -> Result<(), StoreError> {
        self.check()?;
        if meta.discoverable && !meta.user_id.is_empty() {
            self.credentials.retain(|(m, _)| {
                !(m.discoverable && m.rp_id == meta.rp_id && m.user_id == meta.user_id)
            });
        }
        if self.capacity.is_some_and(|c| self.credentials.len() >= c) {
            return Err(StoreError::Full);
        }
        self.credentials.push((meta.clone(), secrets.clone()));
        Ok(())
    }

    fn secrets(&self, id: &[u8]) -> Result<CredentialSecrets, StoreError> {
        self.check()?;
        if self.locked {
            return Err(StoreError::Locked);
        }
        self.credentials
            .iter()
            .find(|(m, _)| m.id == id)
            .map(|(_, s)| s.clone())
            .ok_or(StoreError::NotFound)
    }

    fn next_sign_count(&mut self, id: &[u8], now_unix: u64) -> Result<u32, StoreError> {
        self.check()?;
        let (m, _) = self
            .credentials
            .iter_mut()
            .find(|(m, _)| m.id == id)
            .ok_or(StoreError::NotFound)?;
        m.sign_count = m.sign_count.saturating_add(1);
        m.last_used_unix = Some(now_unix);
        Ok(m.sign_count)
    }
}

/// A user that answers from a script, then with [`ScriptedUser::default_answer`].
#[derive(Debug, Clone)]
pub struct ScriptedUser {
    /// Answers given in order.
    pub script: VecDeque<Result<Approval, UserError>>,
    /// Answer once the script is exhausted.
    pub default_answer: Result<Approval, UserError>,
    /// Every request shown, in order.
    pub shown: Vec<ApprovalRequest>,
}

impl Default for ScriptedUser {
    fn default() -> Self {
        ScriptedUser {
            script: VecDeque::new(),
            default_answer: Ok(Approval {
                user_present: true,
                user_verified: true,
            }),
            shown: Vec::new(),
        }
    }
}

impl ScriptedUser {
    /// Queues one answer.
    pub fn then(&mut self, answer: Result<Approval, UserError>) -> &mut Self {
        self.script.push_back(answer);
        self
    }
}

impl ScriptedUser {
    /// Records `request` as shown and gives the next scripted answer.
    pub fn answer(&mut self, request: &ApprovalRequest) -> Result<Approval, UserError> {
        self.shown.push(request.clone());
        self.script.pop_front().unwrap_or(self.default_answer)
    }
}

/// A clock that moves only when told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeClock {
    /// Monotonic milliseconds.
    pub now_ms: u64,
    /// Unix seconds.
    pub unix: u64,
}

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock {
            now_ms: 1_000,
            unix: 1_700_000_000,
        }
    }
}

impl FakeClock {
    /// Moves both clocks forward.
    pub fn advance_ms(&mut self, ms: u64) {
        self.now_ms = self.now_ms.saturating_add(ms);
        self.unix = self.unix.saturating_add(ms / 1000);
    }
}

impl Clock for FakeClock {
    fn monotonic_ms(&self) -> u64 {
        self.now_ms
    }
    fn unix_secs(&self) -> u64 {
        self.unix
    }
}

/// A deterministic RNG: SHA-256(seed || counter) blocks. Test use only.
#[derive(Clone)]
pub struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    buf: [u8; 32],
    used: usize,
}

impl core::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SeededRng { .. }")
    }
}

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut s = [0u8; 32];
        s.iter_mut()
            .zip(seed.to_le_bytes())
            .for_each(|(d, b)| *d = b);
        SeededRng {
            seed: s,
            counter: 0,
            buf: [0; 32],
            used: 32,
        }
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest.iter_mut() {
            if self.used >= self.buf.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.buf = h.finalize().into();
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *d = self.buf.get(self.used).copied().unwrap_or(0);
            self.used += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SeededRng {}

/// The doubles together: a store (in memory unless told otherwise), the
/// clock and the RNG, with the scripted user that
/// [`Authenticator::process_scripted`] asks.
pub type TestEnv<S = MemStore> = EnvParts<S, FakeClock, SeededRng, ScriptedUser>;

impl TestEnv {
    /// A fresh environment: empty store, approving-and-verifying user.
    pub fn new(seed: u64) -> Self {
        TestEnv::with_store(MemStore::default(), seed)
    }
}

impl<S: CredentialStore> TestEnv<S> {
    /// The doubles around `store` (e.g. the real vault, for benchmarks).
    pub fn with_store(store: S, seed: u64) -> Self {
        EnvParts {
            store,
            clock: FakeClock::default(),
            rng: SeededRng::new(seed),
            user: ScriptedUser::default(),
        }
    }
}

impl<S: CredentialStore> Authenticator<TestEnv<S>> {
    /// Processes `request` to its reply, answering every approval it asks
    /// for from the environment's [`ScriptedUser`] (synchronously: tests,
    /// fuzzing and benches).
    pub fn reply_scripted(&mut self, request: &[u8], ctx: &RequestContext) -> Reply {
        let mut step = self.process(request, ctx);
        loop {
            match step {
                Step::Reply(reply) => return reply,
                Step::NeedsUser(question) => {
                    let answer = self.env_mut().user.answer(&question);
                    step = self.resume(answer);
                }
            }
        }
    }

    /// [`Authenticator::reply_scripted`], the response bytes only.
    pub fn process_scripted(&mut self, request: &[u8], ctx: &RequestContext) -> Vec<u8> {
        self.reply_scripted(request, ctx).bytes
    }
}

/// An authenticator over a fresh [`TestEnv`] with the default config.
pub fn test_authenticator(seed: u64) -> Authenticator<TestEnv> {
    Authenticator::new(Config::default(), TestEnv::new(seed))
}
