"""The relying party behind the interop page: py_webauthn judges every result.

The harness (harness.py) loads a *plan* — a list of steps such as "create a
credential called c1 with user verification required" or "get c1 with the
PRF salt s1" — and the page (page.html) asks for the next step, runs it in
the browser and posts the browser's own JSON encoding of the credential
back. Registration and authentication responses are verified by py_webauthn
(`verify_registration_response` / `verify_authentication_response`):
challenge, origin, RP ID hash, flags (UP, and UV when required), attestation
statement, COSE key, signature and sign counter. What py_webauthn does not
judge — client extension outputs (PRF), which credential a discoverable get
picked, and the user handle — is checked here against the plan.

Standard library plus py_webauthn only; runs in the harness's process.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import webauthn
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

HERE = os.path.dirname(os.path.abspath(__file__))
RP_ID = "localhost"
# How long the page waits for Chromium to report hybridTransport.
HYBRID_WAIT_MS = 10_000


def b64u_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@dataclass
class Step:
    """One ceremony of a plan."""

    op: str  # "create" | "get"
    cred: str  # label of the credential created / expected
    uv: str = "required"
    resident_key: bool = False
    # get: "allow" lists the credential; "empty" sends no allowCredentials.
    allow: str = "allow"
    prf_salt: Optional[bytes] = None
    # get: PRF output must equal / differ from the outputs of these steps.
    prf_same_as: list[int] = field(default_factory=list)
    prf_differs_from: list[int] = field(default_factory=list)
    attestation: str = "none"
    timeout_ms: int = 60000
    # get with allow="empty": the labels of every discoverable credential the
    # browser may pick (default: just `cred`).
    accept: list[str] = field(default_factory=list)


@dataclass
class Cred:
    cred_id: bytes
    public_key: bytes
    sign_count: int
    user_id: bytes
    user_name: str


@dataclass
class Outcome:
    """What happened to one step (filled in as the page reports)."""

    step: int
    op: str
    cred: str
    t_options: float = 0.0
    t_result: float = 0.0
    ok: bool = False
    detail: str = ""
    prf_first: Optional[bytes] = None
    flags: str = ""
    sign_count: int = -1
    fmt: str = ""


class RelyingParty:
    def __init__(self) -> None:
        self.origin = ""
        self.lock = threading.Lock()
        self.steps: list[Step] = []
        self.outcomes: list[Outcome] = []
        self.pending: dict[int, bytes] = {}  # step -> challenge
        self.creds: dict[str, Cred] = {}
        self.next_index = 0
        self.done = threading.Event()
        self.page_loads = 0
        self.await_hybrid = True
        # What the page's getClientCapabilities() said, and how long it polled.
        self.hybrid_transport: Optional[bool] = None
        self.hybrid_wait_ms = 0
        self.page = open(os.path.join(HERE, "page.html"), "rb").read()

    # ------------------------------------------------------------ plans
    def load(self, steps: list[Step], await_hybrid: bool = True) -> None:
        """Hands `steps` to the next page load.

        await_hybrid: the page first polls `getClientCapabilities()` until
        Chromium reports `hybridTransport` (up to HYBRID_WAIT_MS), as an RP
        would before it offers "use a phone". Chromium learns of the BlueZ
        adapter asynchronously after start-up; a request made before that
        gets no hybrid option at all.
        """
        with self.lock:
            self.await_hybrid = await_hybrid
            self.hybrid_transport = None
            self.hybrid_wait_ms = 0
            self.steps = steps
            self.outcomes = [Outcome(step=i + 1, op=s.op, cred=s.cred) for i, s in enumerate(steps)]
            self.pending = {}
            self.next_index = 0
            self.done = threading.Event()

    def failures(self) -> list[str]:
        with self.lock:
            return [f"step {o.step} {o.op} {o.cred}: {o.detail or 'not run'}" for o in self.outcomes if not o.ok]

    # ------------------------------------------------------------ options
    def _next(self) -> dict[str, Any]:
        with self.lock:
            if self.next_index >= len(self.steps):
                return {"op": "done"}
            i = self.next_index
            self.next_index += 1
            s = self.steps[i]
            out = self.outcomes[i]
            out.t_options = time.time()
            challenge = os.urandom(32)
            self.pending[i + 1] = challenge
            uv = UserVerificationRequirement(s.uv)
            if s.op == "create":
                user_id = os.urandom(16)
                opts = webauthn.generate_registration_options(
                    rp_id=RP_ID,
                    rp_name="hybridd interop",
                    user_name=f"{s.cred}@interop.test",
                    user_id=user_id,
                    user_display_name=f"Interop {s.cred}",
                    challenge=challenge,
                    timeout=s.timeout_ms,
                    attestation=AttestationConveyancePreference(s.attestation),
                    authenticator_selection=AuthenticatorSelectionCriteria(
                        resident_key=ResidentKeyRequirement.REQUIRED
                        if s.resident_key
                        else ResidentKeyRequirement.DISCOURAGED,
                        user_verification=uv,
                    ),
                    exclude_credentials=[],
                )
                j = json.loads(webauthn.options_to_json(opts))
                ext: dict[str, Any] = {"credProps": True}
                if s.prf_salt is not None:
                    ext["prf"] = {"eval": {"first": bytes_to_base64url(s.prf_salt)}}
                else:
                    ext["prf"] = {}
                j["extensions"] = ext
                self._user = getattr(self, "_user", {})
                self._user[s.cred] = (user_id, f"{s.cred}@interop.test")
            else:
                allow = []
                if s.allow == "allow":
                    c = self.creds.get(s.cred)
                    if c is not None:
                        allow = [PublicKeyCredentialDescriptor(id=c.cred_id)]
                opts = webauthn.generate_authentication_options(
                    rp_id=RP_ID,
                    challenge=challenge,
                    timeout=s.timeout_ms,
                    allow_credentials=allow,
                    user_verification=uv,
                )
                j = json.loads(webauthn.options_to_json(opts))
                if s.allow == "allow":
                    for d in j.get("allowCredentials", []):
                        d["transports"] = ["hybrid"]
                if s.prf_salt is not None:
                    j["extensions"] = {"prf": {"eval": {"first": bytes_to_base64url(s.prf_salt)}}}
            return {"op": s.op, "step": i + 1, "options": j}

    # ------------------------------------------------------------ results
    def _result(self, body: dict[str, Any]) -> None:
        step = int(body.get("step", 0))
        with self.lock:
            if not 1 <= step <= len(self.steps):
                return
            s = self.steps[step - 1]
            out = self.outcomes[step - 1]
            out.t_result = time.time()
            challenge = self.pending.pop(step, None)
            if challenge is None:
                out.detail = "result for a step that was not asked (or twice)"
                return
            if not body.get("ok"):
                out.detail = "browser: " + str(body.get("error"))
                return
            cred = body.get("credential") or {}
            try:
                if s.op == "create":
                    self._check_create(s, out, cred, challenge)
                else:
                    self._check_get(s, out, cred, challenge)
                out.ok = True
            except Exception as e:  # noqa: BLE001 - any verification failure is the verdict
                out.detail = f"{type(e).__name__}: {e}"

    def _prf_results(self, cred: dict[str, Any]) -> dict[str, Any]:
        return (cred.get("clientExtensionResults") or {}).get("prf") or {}

    def _check_prf_output(self, s: Step, out: Outcome, prf: dict[str, Any]) -> None:
        first = (prf.get("results") or {}).get("first")
        if first is None:
            raise ValueError(f"no PRF output (prf results: {prf!r})")
        value = b64u_decode(first)
        if len(value) != 32:
            raise ValueError(f"PRF output is {len(value)} bytes, not 32")
        out.prf_first = value
        for other in s.prf_same_as:
            if self.outcomes[other - 1].prf_first != value:
                raise ValueError(f"PRF output differs from step {other}'s (same credential, same salt)")
        for other in s.prf_differs_from:
            if self.outcomes[other - 1].prf_first in (None, value):
                raise ValueError(f"PRF output equals step {other}'s (or that step has none)")

    def _check_create(self, s: Step, out: Outcome, cred: dict[str, Any], challenge: bytes) -> None:
        v = webauthn.verify_registration_response(
            credential=cred,
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=self.origin,
            require_user_verification=s.uv == "required",
        )
        user_id, user_name = self._user[s.cred]
        self.creds[s.cred] = Cred(v.credential_id, v.credential_public_key, v.sign_count, user_id, user_name)
        out.sign_count = v.sign_count
        out.fmt = str(v.fmt.value if hasattr(v.fmt, "value") else v.fmt)
        out.flags = "UV" if v.user_verified else "UP"
        ext = cred.get("clientExtensionResults") or {}
        if s.resident_key and (ext.get("credProps") or {}).get("rk") is not True:
            raise ValueError(f"credProps.rk is not true for a resident key: {ext!r}")
        prf = self._prf_results(cred)
        if prf.get("enabled") is not True:
            raise ValueError(f"prf.enabled is not true at create: {prf!r}")
        if s.prf_salt is not None and "results" in prf:
            # Evaluated at creation: must be a proper 32-byte output.
            self._check_prf_output(s, out, prf)

    def _check_get(self, s: Step, out: Outcome, cred: dict[str, Any], challenge: bytes) -> None:
        raw_id = b64u_decode(cred.get("rawId", ""))
        labels = s.accept or [s.cred]
        known = {c.cred_id: (label, c) for label, c in self.creds.items() if label in labels}
        if not known:
            raise ValueError(f"none of {labels} was registered")
        if raw_id not in known:
            raise ValueError(f"the assertion is for another credential than {labels}")
        out.cred, expected = known[raw_id]
        v = webauthn.verify_authentication_response(
            credential=cred,
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=self.origin,
            credential_public_key=expected.public_key,
            credential_current_sign_count=expected.sign_count,
            require_user_verification=s.uv == "required",
        )
        expected.sign_count = v.new_sign_count
        out.sign_count = v.new_sign_count
        out.flags = "UV" if v.user_verified else "UP"
        handle = (cred.get("response") or {}).get("userHandle")
        if s.allow == "empty":
            if handle is None or b64u_decode(handle) != expected.user_id:
                raise ValueError("discoverable get: user handle missing or not the registered user id")
        if s.prf_salt is not None:
            self._check_prf_output(s, out, self._prf_results(cred))

    # ------------------------------------------------------------ HTTP
    def serve(self, port: int = 0) -> int:
        rp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.split("?")[0] in ("/", "/index.html"):
                    with rp.lock:
                        rp.page_loads += 1
                    self._send(200, rp.page, "text/html; charset=utf-8")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    self._send(400, b"{}", "application/json")
                    return
                path = self.path.split("?")[0]
                reply: Any = {}
                if path == "/next":
                    reply = rp._next()
                elif path == "/result":
                    rp._result(body)
                elif path == "/hello":
                    with rp.lock:
                        reply = {"await_hybrid": rp.await_hybrid, "max_ms": HYBRID_WAIT_MS}
                elif path == "/caps":
                    with rp.lock:
                        ht = body.get("hybridTransport")
                        rp.hybrid_transport = ht if isinstance(ht, bool) else None
                        rp.hybrid_wait_ms = int(body.get("waited_ms") or 0)
                elif path == "/done":
                    rp.done.set()
                else:
                    self._send(404, b"{}", "application/json")
                    return
                self._send(200, json.dumps(reply).encode(), "application/json")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        port = self.httpd.server_address[1]
        self.origin = f"http://localhost:{port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return port
