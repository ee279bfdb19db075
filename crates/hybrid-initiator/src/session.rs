//! An open tunnel before ([`Connection`]) and after ([`Channel`]) the
//! handshake, with the hooks fault-injection tests need.

use std::time::Duration;

use hybrid_ble::Psk;
use hybrid_ctap::command::CMD_GET_NEXT_ASSERTION;
use hybrid_ctap::types::UserEntity;
use hybrid_ctap::{
    GetAssertionResponse, GetInfoResponse, MakeCredentialResponse, RegisteredCredential,
    RelyingParty,
};
use hybrid_noise::{
    Crypter, Ephemeral, Frame, Initiator, InitiatorAwaitingResponse, PostHandshakeMessage, Revision,
};
use hybrid_tunnel::client::DesktopTunnel;
use p256::SecretKey;
use rand_core::CryptoRngCore;

use crate::error::{Error, Stage};
use crate::timeline::Timeline;

/// Default bound on each wait for the phone (msg2, post-handshake message,
/// a CTAP reply). The phone's approval happens inside that wait.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the desktop asks for user verification and requires it in the
/// answer (WebAuthn `userVerification`; the CTAP `uv` option, CTAP 2.2
/// §6.1.2 / §6.2.2). Set per [`Channel`] with
/// [`Channel::set_user_verification`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserVerification {
    /// `uv: true` in every request, and an answer without the UV flag is
    /// refused. The default: what Chrome asks of a phone over hybrid.
    #[default]
    Required,
    /// No `uv` option in the request, and an answer without the UV flag is
    /// accepted; rpIdHash, UP, the attestation, the signature and the
    /// counter are checked as always. Only for authenticators that do no
    /// user verification (e.g. webauthn-rs's `SoftToken`, the benchmark's
    /// comparison phone) — never the default.
    Discouraged,
}

impl UserVerification {
    fn required(self) -> bool {
        self == UserVerification::Required
    }

    /// The request's `uv` option.
    fn option(self) -> Option<bool> {
        self.required().then_some(true)
    }
}

/// An open `/cable/connect/` tunnel, before the handshake.
pub struct Connection {
    tunnel: DesktopTunnel,
    psk: Psk,
    identity: SecretKey,
    timeline: Timeline,
    io_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

async fn recv_within(
    tunnel: &mut DesktopTunnel,
    timeout: Duration,
    stage: Stage,
) -> Result<Vec<u8>, Error> {
    match tokio::time::timeout(timeout, tunnel.recv()).await {
        Err(_) => Err(Error::Timeout(stage, timeout)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(None)) => Err(Error::Closed(stage)),
        Ok(Ok(Some(m))) => Ok(m),
    }
}

/// Waits for the peer to close; `true` if it did within `timeout` (any
/// message received meanwhile is discarded, like Chrome after shutdown, §6.3).
async fn closed_within(tunnel: &mut DesktopTunnel, timeout: Duration) -> bool {
    let wait = async {
        loop {
            match tunnel.recv().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.is_ok()
}

impl Connection {
    pub(crate) fn new(
        tunnel: DesktopTunnel,
        psk: Psk,
        identity: SecretKey,
        timeline: Timeline,
    ) -> Self {
        Connection {
            tunnel,
            psk,
            identity,
            timeline,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }

    /// Sets the bound on each wait for the phone.
    pub fn set_io_timeout(&mut self, timeout: Duration) {
        self.io_timeout = timeout;
    }

    /// The phases so far (`"tunnel"`).
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Builds msg1 (81 bytes, §5.3) without sending it — to send it, a
    /// corrupted copy, or a replay later with [`Connection::send_raw`].
    pub fn msg1<R: CryptoRngCore>(
        &self,
        rng: &mut R,
    ) -> Result<(InitiatorAwaitingResponse, Vec<u8>), Error> {
        let initiator = Initiator::qr(self.psk.as_bytes(), &self.identity);
        Ok(initiator.start(Ephemeral::Random(rng))?)
    }

    /// Sends `bytes` as one tunnel message, unencrypted (garbage, a
    /// truncated or replayed msg1).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        Ok(self.tunnel.send(bytes).await?)
    }

    /// The next tunnel message as it arrives (`Err(Closed)` when the phone closed).
    pub async fn recv_raw(&mut self) -> Result<Vec<u8>, Error> {
        recv_within(&mut self.tunnel, self.io_timeout, Stage::Handshake).await
    }

    /// Waits up to `timeout` for the phone to close the tunnel.
    pub async fn wait_closed(&mut self, timeout: Duration) -> bool {
        closed_within(&mut self.tunnel, timeout).await
    }

    /// Sends msg1, then [`Connection::finish_handshake`].
    pub async fn handshake<R: CryptoRngCore + Send>(self, rng: &mut R) -> Result<Channel, Error> {
        let (pending, msg1) = self.msg1(rng)?;
        let mut this = self;
        this.tunnel.send(msg1).await?;
        this.finish_handshake(pending).await
    }

    /// After msg1 went out: reads msg2 and applies the desktop's rules (§5.3:
    /// exactly 81 bytes, valid point, empty payload; phase `"handshake"`),
    /// then the post-handshake message (§6.2: revision detection, "ctap"
    /// required, getInfo parsed; phase `"getInfo"`).
    pub async fn finish_handshake(
        mut self,
        pending: InitiatorAwaitingResponse,
    ) -> Result<Channel, Error> {
        let msg2 = recv_within(&mut self.tunnel, self.io_timeout, Stage::Handshake).await?;
        let (crypter, _hash) = pending.finish(&msg2)?.into_parts();
        self.timeline.mark("handshake");
        let mut channel = Channel {
            tunnel: self.tunnel,
            crypter,
            post_handshake: PostHandshakeMessage {
                get_info: None,
                features: Vec::new(),
                linking: None,
            },
            revision: Revision::Rev1,
            get_info: None,
            timeline: self.timeline,
            io_timeout: self.io_timeout,
            updates: 0,
            user_verification: UserVerification::Required,
        };
        let ct = recv_within(
            &mut channel.tunnel,
            channel.io_timeout,
            Stage::PostHandshake,
        )
        .await?;
        let plain = zeroize::Zeroizing::new(channel.crypter.decrypt(&ct)?);
        let (msg, revision) = PostHandshakeMessage::decode(&plain)?;
        let info = GetInfoResponse::from_cbor(msg.require_ctap()?)?;
        channel.post_handshake = msg;
        channel.revision = revision;
        channel.get_info = Some(info);
        channel.timeline.mark("getInfo");
        Ok(channel)
    }

    /// Closes the tunnel without a handshake.
    pub async fn close(self) {
        let _ = self.tunnel.close().await;
    }
}

/// An established session: the phone's getInfo is known, CTAP requests can
/// be sent.
pub struct Channel {
    tunnel: DesktopTunnel,
    crypter: Crypter,
    post_handshake: PostHandshakeMessage,
    revision: Revision,
    get_info: Option<GetInfoResponse>,
    timeline: Timeline,
    io_timeout: Duration,
    updates: usize,
    user_verification: UserVerification,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("revision", &self.revision)
            .field("updates", &self.updates)
            .field("user_verification", &self.user_verification)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// The phone's getInfo (post-handshake key 1, §6.2).
    pub fn get_info(&self) -> Option<&GetInfoResponse> {
        self.get_info.as_ref()
    }

    /// The whole post-handshake message.
    pub fn post_handshake(&self) -> &PostHandshakeMessage {
        &self.post_handshake
    }

    /// The detected protocol revision (§6.2).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Update frames received and skipped so far (§6.4).
    pub fn updates_seen(&self) -> usize {
        self.updates
    }

    /// Phases so far: `"tunnel"`, `"handshake"`, `"getInfo"`, then one per
    /// request.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Mutable timeline (e.g. to [`Timeline::skip`] time spent elsewhere).
    pub fn timeline_mut(&mut self) -> &mut Timeline {
        &mut self.timeline
    }

    /// Sets the bound on each wait for the phone.
    pub fn set_io_timeout(&mut self, timeout: Duration) {
        self.io_timeout = timeout;
    }

    /// Whether the requests ask for user verification and the answers must
    /// carry it ([`UserVerification::Required`] unless set otherwise).
    pub fn set_user_verification(&mut self, uv: UserVerification) {
        self.user_verification = uv;
    }

    /// Encrypts `plaintext` as-is (a whole frame including its type byte,
    /// e.g. an unknown type `07`) and sends it.
    pub async fn send_frame(&mut self, plaintext: &[u8]) -> Result<(), Error> {
        let ct = self.crypter.encrypt(plaintext)?;
        Ok(self.tunnel.send(ct).await?)
    }

    /// Encrypts `plaintext`, flips a bit of the GCM tag, and sends it: a
    /// frame that fails to decrypt on the phone (§5.5).
    pub async fn send_corrupted(&mut self, plaintext: &[u8]) -> Result<(), Error> {
        let mut ct = self.crypter.encrypt(plaintext)?;
        if let Some(last) = ct.last_mut() {
            *last ^= 0x01;
        }
        Ok(self.tunnel.send(ct).await?)
    }

    /// Sends `bytes` as one tunnel message, unencrypted.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        Ok(self.tunnel.send(bytes).await?)
    }

    /// Receives and decrypts the next frame, with the desktop's parse rules
    /// (§6.3, `Frame::parse_from_phone`).
    pub async fn recv_frame(&mut self) -> Result<Frame, Error> {
        let ct = recv_within(&mut self.tunnel, self.io_timeout, Stage::Reply).await?;
        let plain = zeroize::Zeroizing::new(self.crypter.decrypt(&ct)?);
        Ok(Frame::parse_from_phone(&plain)?)
    }

    /// Waits up to `timeout` for the phone to close the tunnel.
    pub async fn wait_closed(&mut self, timeout: Duration) -> bool {
        closed_within(&mut self.tunnel, timeout).await
    }

    /// The close code and reason the tunnel ended with, once it has: the
    /// phone's, or the tunnel server's own (e.g. 1001 "server shutting
    /// down", 1008 "tunnel lifetime exceeded"). `None` while open or when
    /// the connection just dropped.
    pub fn close_reason(&self) -> Option<(u16, &str)> {
        self.tunnel.close_reason()
    }

    /// Sends `01 || request` (request = CTAP command byte + CBOR) and returns
    /// the CTAP reply (status byte + CBOR). Update frames in between are
    /// skipped (§6.4); a shutdown or JSON frame is an error (§6.3). Records
    /// phase `phase`.
    pub async fn ctap(&mut self, request: &[u8], phase: &str) -> Result<Vec<u8>, Error> {
        self.send_frame(&Frame::Ctap(request.to_vec()).encode())
            .await?;
        loop {
            match self.recv_frame().await? {
                Frame::Ctap(reply) => {
                    self.timeline.mark(phase);
                    return Ok(reply);
                }
                Frame::Update(_) => self.updates += 1,
                Frame::Shutdown => return Err(Error::UnexpectedFrame("shutdown")),
                Frame::Json(_) => return Err(Error::UnexpectedFrame("JSON")),
            }
        }
    }

    /// makeCredential as `rp` would send it (ES256/EdDSA, `uv` as set by
    /// [`Channel::set_user_verification`], `rk` if `discoverable`), verified
    /// as the RP: rpIdHash, UP, UV (when required), attestation (phase
    /// `"makeCredential"`).
    pub async fn register(
        &mut self,
        rp: &RelyingParty,
        client_data_hash: [u8; 32],
        user: UserEntity,
        discoverable: bool,
    ) -> Result<(RegisteredCredential, MakeCredentialResponse), Error> {
        let mut req = rp.make_credential_request(client_data_hash, user, discoverable);
        req.options.uv = self.user_verification.option();
        let reply = self.ctap(&req.to_frame(), "makeCredential").await?;
        let required = self.user_verification.required();
        Ok(rp.verify_registration(&client_data_hash, &reply, required)?)
    }

    /// getAssertion (empty `allow` = discoverable), verified as the RP:
    /// known credential, rpIdHash, UP, UV (when required), signature over
    /// `authData || clientDataHash`, counter increase (phase `"getAssertion"`).
    /// Returns the index of the credential used.
    pub async fn authenticate(
        &mut self,
        rp: &RelyingParty,
        credentials: &mut [RegisteredCredential],
        client_data_hash: [u8; 32],
        allow: &[Vec<u8>],
    ) -> Result<(usize, GetAssertionResponse), Error> {
        let mut req = rp.get_assertion_request(client_data_hash, allow);
        req.options.uv = self.user_verification.option();
        let reply = self.ctap(&req.to_frame(), "getAssertion").await?;
        let required = self.user_verification.required();
        Ok(rp.verify_assertion(credentials, &client_data_hash, &reply, required)?)
    }

    /// getNextAssertion (0x08) after a discoverable getAssertion with
    /// `numberOfCredentials` > 1, verified like [`Channel::authenticate`]
    /// (phase `"getNextAssertion"`).
    pub async fn next_assertion(
        &mut self,
        rp: &RelyingParty,
        credentials: &mut [RegisteredCredential],
        client_data_hash: [u8; 32],
    ) -> Result<(usize, GetAssertionResponse), Error> {
        let reply = self
            .ctap(&[CMD_GET_NEXT_ASSERTION], "getNextAssertion")
            .await?;
        let required = self.user_verification.required();
        Ok(rp.verify_assertion(credentials, &client_data_hash, &reply, required)?)
    }

    /// Sends the shutdown frame `00` (§6.3), then waits (bounded by the I/O
    /// timeout) for the phone to close, and closes. Returns the timeline
    /// and whether the phone closed by itself.
    pub async fn shutdown(mut self) -> Result<(Timeline, bool), Error> {
        self.send_frame(&Frame::Shutdown.encode()).await?;
        let closed = closed_within(&mut self.tunnel, self.io_timeout).await;
        let _ = self.tunnel.close().await;
        Ok((self.timeline, closed))
    }

    /// Closes the tunnel without a shutdown frame.
    pub async fn close(self) {
        let _ = self.tunnel.close().await;
    }
}
