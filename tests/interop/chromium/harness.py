"""An unmodified Chromium performs hybrid ceremonies against `hybridd run`.

Started by run.sh (which installs what is missing and builds the binaries);
see docs/interop.md for the picture and the results. Every process it starts
it also ends. Output: one line per ceremony with its timings, one line per
scenario, a table, and finally `CHROMIUM-INTEROP RESULT: PASS|FAIL (...)`.

Pieces, all on loopback, no Bluetooth and no internet:
  * a private D-Bus "system" bus (DBUS_SYSTEM_BUS_ADDRESS) with the project's
    fake org.bluez (`interop-fake-bluez`): it accepts hybridd's
    LEAdvertisingManager1.RegisterAdvertisement and shows the registered
    service data to a discovering client (Chromium) as Device1.ServiceData;
    in the file-radio mode it also turns the daemon's advert file into a
    registration;
  * the project's tunnel server (`hybridd tunnel-server`) with TLS for
    Chromium (reached through --host-resolver-rules for cable.ua5v.com, its
    throwaway CA in an NSS db under a private $HOME) and a plain ws://
    listener on loopback for hybridd;
  * `hybridd run --approval auto --pin-file` (the PIN check sets UV), fed by
    `hybridd scan <FIDO:/ URL>` for each QR code read with zbarimg from a
    screenshot of Chromium's window under Xvfb;
  * rp.py (py_webauthn) behind page.html at http://localhost:PORT;
  * for `notify-fingerprint` only (desktop.py): a second `hybridd run`
    configured as on a desktop, asking through dunst and verifying with
    fprintd's virtual reader.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from desktop import NotifyPhone
from rp import RelyingParty, Step

T0 = time.time()


def log(msg: str) -> None:
    sys.stderr.write(f"[harness {time.time() - T0:7.2f}] {msg}\n")
    sys.stderr.flush()


class SetupError(Exception):
    pass


# ---------------------------------------------------------------- processes

class Procs:
    """Every child, started in its own process group, ended on exit."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def start(self, argv: list[str], logfile: str, env: Optional[dict] = None,
              stdout_pipe: bool = False) -> subprocess.Popen:
        out = open(logfile, "ab")
        p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if stdout_pipe else out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.children.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 5.0) -> Optional[int]:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        # The leader is gone; its helpers (Chromium's renderers, GPU and
        # zygote processes) may not be yet. Let none outlive it into the next
        # scenario.
        for sig_at_end in (signal.SIGKILL, None):
            deadline = time.time() + grace
            while group_alive(p.pid) and time.time() < deadline:
                time.sleep(0.02)
            if not group_alive(p.pid) or sig_at_end is None:
                break
            log(f"process group {p.pid} outlived its leader by {grace:.0f} s: SIGKILL")
            try:
                os.killpg(p.pid, sig_at_end)
            except ProcessLookupError:
                pass
        if p in self.children:
            self.children.remove(p)
        return p.returncode

    def stop_all(self) -> None:
        for p in reversed(list(self.children)):
            self.stop(p, grace=2.0)


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group `pgid` (Linux /proc)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def wait_for(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(step)
    raise SetupError(f"timed out waiting for {what}")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- the world

# Shared with tests/interop/peers/run.sh.
COMMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common")

CHROMIUM_TS = re.compile(r"^\[\d+:\d+:(\d{4})/(\d{6}\.\d{6}):")


def chromium_time(line: str) -> Optional[float]:
    """Unix time of a Chromium log line (`[pid:tid:MMDD/HHMMSS.micros:…`, local time)."""
    m = CHROMIUM_TS.match(line)
    if not m:
        return None
    now = datetime.datetime.now()
    try:
        t = datetime.datetime.strptime(f"{now.year}{m.group(1)}{m.group(2)}", "%Y%m%d%H%M%S.%f")
    except ValueError:
        return None
    return t.timestamp()


@dataclass
class Scan:
    """One `hybridd scan` run for one QR code."""

    url: str
    t_qr: float  # QR decoded from the screenshot
    t_scan: float = 0.0  # hybridd scan started (after busy retries)
    t_end: float = 0.0
    rc: Optional[int] = None
    busy_retries: int = 0
    output: str = ""


@dataclass
class Result:
    mode: str
    name: str
    ok: bool
    detail: str
    ceremonies: int = 0
    lines: list[str] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)


class World:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run = os.path.abspath(args.run_dir)
        self.bin = os.path.abspath(args.bin_dir)
        self.procs = Procs()
        self.rp = RelyingParty()
        self.env = dict(os.environ)
        self.fake: Optional[subprocess.Popen] = None
        self.daemon: Optional[subprocess.Popen] = None
        self.scenario_no = 0
        self.chromium_version = ""
        # For desktop.py (this file runs as __main__, so it cannot import them).
        self.SetupError, self.log, self.wait_for = SetupError, log, wait_for

    def path(self, *p: str) -> str:
        return os.path.join(self.run, *p)

    def hybridd(self) -> str:
        return os.path.join(self.bin, "hybridd")

    # -------------------------------------------------------- set-up
    def setup(self) -> None:
        os.makedirs(self.run, exist_ok=True)
        for d in ("pki", "xdg/config", "xdg/data", "xdg/runtime", "home-trusted/.pki/nssdb",
                  "home-untrusted/.pki/nssdb", "logs", "shots"):
            os.makedirs(self.path(d), exist_ok=True)
        os.chmod(self.path("xdg/runtime"), 0o700)
        self.env.update({
            "XDG_CONFIG_HOME": self.path("xdg/config"),
            "XDG_DATA_HOME": self.path("xdg/data"),
            "XDG_RUNTIME_DIR": self.path("xdg/runtime"),
            "RUST_LOG": self.env.get("RUST_LOG", "info"),
        })
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.pki()
        self.bus()
        self.tunnel()
        self.rp_port = self.rp.serve(0)
        self.xvfb()
        self.vault()
        self.chromium_version = subprocess.run(
            ["chromium", "--version"], capture_output=True, text=True, env=self.env
        ).stdout.strip()
        log(f"{self.chromium_version}; RP {self.rp.origin}; tunnel {self.tls_url} / {self.plain_url}")

    def sh(self, argv: list[str], what: str, env: Optional[dict] = None) -> str:
        r = subprocess.run(argv, capture_output=True, text=True, env=env or self.env)
        if r.returncode != 0:
            raise SetupError(f"{what} failed ({r.returncode}): {r.stderr.strip()[-400:]}")
        return r.stdout

    def pki(self) -> None:
        """A throwaway CA, a leaf for cable.ua5v.com, and an NSS db trusting the CA."""
        pki = self.path("pki")
        self.sh(["bash", os.path.join(COMMON, "pki.sh"), pki], "pki.sh (openssl)")
        for home in ("home-trusted", "home-untrusted"):
            self.sh(["certutil", "-d", f"sql:{self.path(home, '.pki/nssdb')}", "-N", "--empty-password"],
                    "certutil -N")
        self.sh(["certutil", "-d", f"sql:{self.path('home-trusted/.pki/nssdb')}", "-A", "-t", "C,,",
                 "-n", "hybridd-interop-ca", "-i", f"{pki}/ca.pem"], "certutil -A")

    def bus(self) -> None:
        sock = self.path("system_bus_socket")
        with open(os.path.join(COMMON, "system-bus.conf")) as f:
            conf = f.read().replace("@SOCKET@", sock)
        with open(self.path("bus.conf"), "w") as f:
            f.write(conf)
        self.procs.start(["dbus-daemon", f"--config-file={self.path('bus.conf')}", "--nofork",
                          "--nopidfile"], self.path("logs/dbus.log"))
        wait_for(lambda: os.path.exists(sock), 10, "the private dbus-daemon")
        self.env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={sock}"

    def tunnel(self) -> None:
        p = self.procs.start([self.hybridd(), "tunnel-server", "--listen", "127.0.0.1:0",
                              "--tls-cert", self.path("pki/chain.pem"), "--tls-key",
                              self.path("pki/server.key"), "--plain-listen", "127.0.0.1:0"],
                             self.path("logs/tunnel.log"), env=self.env, stdout_pipe=True)
        assert p.stdout is not None
        self.tls_url = p.stdout.readline().decode().strip()
        self.plain_url = p.stdout.readline().decode().strip()
        if not self.tls_url.startswith("wss://") or not self.plain_url.startswith("ws://"):
            raise SetupError(f"tunnel server printed {self.tls_url!r} / {self.plain_url!r}")
        self.tls_port = int(self.tls_url.rsplit(":", 1)[1])

    def xvfb(self) -> None:
        r, w = os.pipe()
        p = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x900x24",
                              "-nolisten", "tcp", "-noreset"], pass_fds=(w,), stdout=subprocess.DEVNULL,
                             stderr=open(self.path("logs/xvfb.log"), "ab"), start_new_session=True)
        self.procs.children.append(p)
        os.close(w)
        with os.fdopen(r) as f:
            display = f.readline().strip()
        if not display:
            raise SetupError("Xvfb did not start")
        self.env["DISPLAY"] = f":{display}"

    def vault(self) -> None:
        with open(self.path("pin.txt"), "w") as f:
            f.write("246810\n")
        os.chmod(self.path("pin.txt"), 0o600)
        self.sh([self.hybridd(), "vault", "init", "--pin-file", self.path("pin.txt")], "hybridd vault init")

    # -------------------------------------------------------- per mode
    def start_fake_bluez(self, mode: str, adapter: bool = True) -> None:
        if self.fake is not None:
            self.procs.stop(self.fake)
        ready = self.path("bluez.ready")
        if os.path.exists(ready):
            os.remove(ready)
        argv = [os.path.join(self.bin, "interop-fake-bluez"), "--ready-file", ready,
                "--events", self.path("logs/bluez-events.txt")]
        if mode == "file":
            argv += ["--advert-file", self.path("advert.hex")]
        if not adapter:
            argv.append("--no-adapter")
        self.fake = self.procs.start(argv, self.path("logs/fake-bluez.log"), env=self.env)
        wait_for(lambda: os.path.exists(ready), 10, "the fake org.bluez")

    def start_daemon(self, mode: str) -> None:
        """`hybridd run` with the flags docs/interop.md and the README show."""
        argv = [self.hybridd(), "run", "--tunnel-url", self.plain_url, "--approval", "auto",
                "--pin-file", self.path("pin.txt"), "--wait-for-desktop-secs",
                str(self.args.wait_for_desktop)]
        if mode == "file":
            argv += ["--advert-file", self.path("advert.hex")]
        log("daemon: " + " ".join(argv[1:]).replace(self.run, "$RUN"))
        self.daemon = self.procs.start(argv, self.path(f"logs/daemon-{mode}.log"), env=self.env)
        sock = self.path("xdg/runtime/hybridd/control.sock")
        wait_for(lambda: os.path.exists(sock) or self.daemon.poll() is not None, 20, "hybridd run")
        if self.daemon.poll() is not None:
            raise SetupError(f"hybridd run exited with {self.daemon.returncode} (see logs/daemon-{mode}.log)")

    def stop_daemon(self) -> Optional[int]:
        rc = None
        if self.daemon is not None:
            rc = self.procs.stop(self.daemon, signal.SIGTERM, 10)
            self.daemon = None
        return rc

    # -------------------------------------------------------- hybridd scan
    def scan(self, s: Scan) -> None:
        """Runs `hybridd scan - < qr.txt` (the README's flow, qr.txt
        holding the QR's URL, never on a command line), retrying while the daemon answers busy (75)."""
        deadline = time.time() + 30
        qr = self.path(f"qr-{threading.get_ident()}.txt")
        with open(qr + ".tmp", "w") as f:
            f.write(s.url + "\n")
        os.replace(qr + ".tmp", qr)
        env = dict(self.env, HYBRIDD=self.hybridd(), QR=qr)
        while True:
            s.t_scan = time.time()
            r = subprocess.run(["sh", "-c", '"$HYBRIDD" scan - < "$QR"'], capture_output=True,
                               text=True, env=env, stdin=subprocess.DEVNULL)
            s.t_end = time.time()
            s.rc = r.returncode
            s.output = (r.stdout + r.stderr).strip()
            if r.returncode == 75 and time.time() < deadline:
                s.busy_retries += 1
                time.sleep(0.1)
                continue
            return

    # -------------------------------------------------------- one scenario
    def scenario(self, mode: str, name: str, steps: list[Step], *, trusted: bool = True,
                 expect: str = "pass", timeout: float = 120, chromium_logs: tuple[str, ...] = (),
                 scanner: Optional[Callable[[Scan], None]] = None,
                 check: Optional[Callable[[], list[str]]] = None) -> Result:
        """Runs one Chromium session over `steps`.

        expect = "pass": every step verified by the RP and every scan exit 0.
        expect = "untrusted": Chromium reports the tunnel's certificate as
        untrusted and the scan fails with desktop_never_connected.
        expect = "no-adapter": Chromium offers no hybrid (no QR) and a scan of a
        QR from a desktop that never connects fails cleanly.
        chromium_logs: strings Chromium's log must contain for a pass.
        scanner: hands one QR code to a phone (default `scan`, the auto daemon).
        check: more problems to find after the ceremonies (for a pass).
        """
        scanner = scanner or self.scan
        self.scenario_no += 1
        tag = f"{self.scenario_no:02d}-{mode}-{name}"
        log(f"scenario {tag}: {len(steps)} step(s), expect {expect}")
        self.rp.load(steps, await_hybrid=expect != "no-adapter")
        home = self.path("home-trusted" if trusted else "home-untrusted")
        t_start = time.time()
        chrome, clog = self.launch_chromium(tag, home)
        loads_before = self.rp.page_loads
        notes: list[str] = []
        scans: list[Scan] = []
        threads: list[threading.Thread] = []
        last_url = ""
        reason = ""
        shot = self.path("shots", f"{tag}.png")
        deadline = time.time() + timeout
        minted: Optional[Scan] = None
        chooser_handled = 0
        try:
            while True:
                if self.rp.done.is_set():
                    break
                if time.time() > deadline:
                    reason = f"timeout after {timeout:.0f} s"
                    break
                if chrome.poll() is not None:
                    # A browser that dies before it has even loaded the RP's
                    # page never reached hybrid: start it once more, and say so.
                    early = f"chromium exited ({chrome.returncode}) before loading the page"
                    if self.rp.page_loads == loads_before and not scans and not notes:
                        notes.append(f"{early}; started again. Its log ends: {log_tail(clog)}")
                        log(f"{tag}: {notes[-1]}")
                        chrome, clog = self.launch_chromium(f"{tag}-again", home)
                        continue
                    reason = f"chromium exited ({chrome.returncode})"
                    if self.rp.page_loads == loads_before:
                        reason = early
                    log(f"{tag}: {reason}. Its log ends: {log_tail(clog)}")
                    break
                text = read(clog)
                if expect == "pass":
                    m = re.search(r"UI step: (k\w*Error\w*)", text)
                    if m:
                        reason = f"Chromium showed {m.group(1)}"
                        break
                elif expect == "untrusted":
                    # Chromium 156 logs the failed tunnel connection and stays
                    # on its "connecting" sheet; hybridd gives up after its wait.
                    if "Tunnel server connection failed" in text and scans and all(
                            s.rc is not None for s in scans):
                        break
                elif expect == "no-adapter":
                    # Chromium has shown its dialog (a UI step) without the QR.
                    if "No BLE adapter present" in text and "UI step:" in text and minted is None:
                        minted = Scan(url=self.mint_qr(), t_qr=time.time())
                        th = threading.Thread(target=self.scan, args=(minted,), daemon=True)
                        th.start()
                        threads.append(th)
                    if minted is not None and minted.rc is not None:
                        break
                if expect == "pass":
                    n_choosers = len(re.findall(r"UI step: kSelectAccount", text))
                    if n_choosers > chooser_handled:
                        chooser_handled = n_choosers
                        self.choose_account(tag, chooser_handled, clog)
                u = self.grab_qr(shot)
                if u and u != last_url:
                    last_url = u
                    s = Scan(url=u, t_qr=time.time())
                    scans.append(s)
                    th = threading.Thread(target=scanner, args=(s,), daemon=True)
                    th.start()
                    threads.append(th)
                    shutil.copy(shot, self.path("shots", f"{tag}-qr{len(scans)}.png"))
                time.sleep(0.15)
        finally:
            self.procs.stop(chrome, grace=3)
            for th in threads:
                th.join(timeout=self.args.wait_for_desktop + 15)
        text = read(clog)
        for note in notes:
            print(f"  (note: {note})", flush=True)
        if check is not None and expect == "pass":
            reason = "; ".join(filter(None, [reason, *check()]))
        return self.judge(mode, name, expect, reason, steps, scans, minted, text, t_start, chromium_logs)

    def launch_chromium(self, tag: str, home: str) -> tuple[subprocess.Popen, str]:
        """Starts Chromium on the RP's page with a fresh profile; returns it and its log."""
        profile = self.path("profiles", tag)
        clog = self.path("logs", f"chromium-{tag}.log")
        argv = ["chromium", f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
                "--password-store=basic", "--disable-gpu", "--window-size=1280,900",
                "--window-position=0,0", f"--host-resolver-rules=MAP cable.ua5v.com 127.0.0.1:{self.tls_port}",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-pings", "--disable-quic", "--enable-logging=stderr", "--v=0",
                "--vmodule=device_event_log*=1"]
        if os.getuid() == 0:
            argv.append("--no-sandbox")
        argv.append(f"http://localhost:{self.rp_port}/")
        return self.procs.start(argv, clog, env=dict(self.env, HOME=home)), clog

    def choose_account(self, tag: str, n: int, clog: str) -> None:
        """Chromium's account chooser (several discoverable credentials came
        back): pick an account as a user would, with the keyboard."""
        time.sleep(0.5)
        self.screenshot(self.path("shots", f"{tag}-chooser{n}.png"))
        before = read(clog).count("UI step:")
        for keys in (["Return"], ["Tab", "Return"], ["Down", "Return"]):
            r = subprocess.run(["xdotool", "key", "--delay", "100", *keys], capture_output=True, text=True,
                               env=self.env)
            log(f"{tag}: account chooser: xdotool key {' '.join(keys)} -> {r.returncode} {r.stderr.strip()}")
            t = time.time() + 3
            while time.time() < t:
                if read(clog).count("UI step:") > before or self.rp.done.is_set():
                    log(f"{tag}: account chosen with {' '.join(keys)}")
                    return
                time.sleep(0.1)

    def mint_qr(self) -> str:
        return self.sh([os.path.join(self.bin, "interop-mint-qr")], "interop-mint-qr").strip()

    def screenshot(self, path: str) -> bool:
        """The whole Xvfb screen as a PNG at `path`; whether it worked."""
        r = subprocess.run(["import", "-display", self.env["DISPLAY"], "-window", "root", path],
                           capture_output=True)
        return r.returncode == 0

    def grab_qr(self, shot: str) -> str:
        tmp = shot + ".tmp.png"
        if not self.screenshot(tmp):
            return ""
        os.replace(tmp, shot)
        env = dict(self.env)
        env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        z = subprocess.run(["zbarimg", "--nodbus", "-q", "--raw", shot], capture_output=True, text=True,
                           env=env)
        for line in z.stdout.splitlines():
            if line.startswith("FIDO:/"):
                return line.strip()
        return ""

    # -------------------------------------------------------- verdict
    def judge(self, mode: str, name: str, expect: str, reason: str, steps: list[Step],
              scans: list[Scan], minted: Optional[Scan], text: str, t_start: float,
              chromium_logs: tuple[str, ...] = ()) -> Result:
        lines: list[str] = []
        timings: list[dict] = []
        qr_shown = [t for t in (chromium_time(line) for line in text.splitlines()
                                if "UI step: kCableV2QRCode" in line) if t]
        matched = [t for t in (chromium_time(line) for line in text.splitlines()
                               if "matches QR code" in line) if t]
        errors = [line.split("] ", 1)[-1] for line in text.splitlines()
                  if "FIDO" in line and ("ERROR" in line or "invalid" in line)]
        problems: list[str] = []
        if expect == "pass":
            problems += self.rp.failures()
            problems += [f"Chromium's log lacks {want!r}" for want in chromium_logs if want not in text]
            if reason:
                problems.insert(0, reason)
            if len(scans) != len(steps):
                problems.append(f"{len(scans)} QR codes read for {len(steps)} ceremonies")
            for i, s in enumerate(scans):
                if s.rc != 0:
                    problems.append(f"hybridd scan #{i + 1} exit {s.rc}: {last_line(s.output)}")
            outs = self.rp.outcomes
            for i, o in enumerate(outs):
                s = scans[i] if i < len(scans) else None
                t = {
                    "step": o.step, "op": o.op, "cred": o.cred, "ok": o.ok,
                    "qr_shown_to_scan_ms": ms(nth(qr_shown, i), s.t_scan if s else None),
                    "scan_to_advert_seen_ms": ms(s.t_scan if s else None, nth(matched, i)),
                    "advert_seen_to_credential_ms": ms(nth(matched, i), o.t_result or None),
                    "total_ms": ms(nth(qr_shown, i), o.t_result or None),
                    "busy_retries": s.busy_retries if s else None,
                    "fmt": o.fmt, "flags": o.flags, "sign_count": o.sign_count,
                    "prf": o.prf_first.hex() if o.prf_first else None,
                }
                timings.append(t)
                lines.append(
                    f"CEREMONY {mode}/{name} {o.step} {o.op:6} {o.cred:4} {'OK  ' if o.ok else 'FAIL'} "
                    f"{o.flags:2} count={o.sign_count}{' fmt=' + o.fmt if o.fmt else ''}"
                    f"{' prf=' + o.prf_first.hex()[:16] if o.prf_first else ''}"
                    f" | QR shown→scan {fmt(t['qr_shown_to_scan_ms'])}, "
                    f"scan→advert seen {fmt(t['scan_to_advert_seen_ms'])}, "
                    f"advert→credential {fmt(t['advert_seen_to_credential_ms'])}, "
                    f"total {fmt(t['total_ms'])}" + ("" if o.ok else f" ({o.detail})"))
        elif expect == "untrusted":
            tunnel_failed = re.search(r"Tunnel server connection failed: .*?(net::ERR_\w+)", text)
            if not tunnel_failed:
                problems.append(reason or "Chromium did not report a failed tunnel connection")
            if not re.search(r"ERR_(INSECURE_RESPONSE|CERT_AUTHORITY_INVALID)|net_error -202", text):
                problems.append("Chromium's log does not name the untrusted certificate")
            if len(scans) != 1:
                problems.append(f"{len(scans)} QR codes read, expected 1")
            for s in scans:
                if s.rc != 1 or "desktop_never_connected" not in s.output and "never connected" not in s.output:
                    problems.append(f"hybridd scan exit {s.rc}: {last_line(s.output)}")
                lines.append(f"NEGATIVE {mode}/{name}: Chromium: tunnel connection failed with "
                             f"{tunnel_failed.group(1) if tunnel_failed else '?'}; hybridd scan exit {s.rc}: "
                             f"{last_line(s.output)} after {s.t_end - s.t_scan:.1f} s")
        elif expect == "no-adapter":
            if "No BLE adapter present" not in text:
                problems.append(reason or "Chromium did not log 'No BLE adapter present'")
            if qr_shown or scans:
                problems.append("Chromium offered hybrid (showed a QR) without an adapter")
            if minted is None or minted.rc is None:
                problems.append(reason or "the minted QR was not scanned")
            else:
                if minted.rc != 1:
                    problems.append(f"hybridd scan exit {minted.rc}: {last_line(minted.output)}")
                steps_seen = re.findall(r"UI step: (k\w+)", text)
                lines.append(f"NEGATIVE {mode}/{name}: Chromium UI {','.join(dict.fromkeys(steps_seen))}, "
                             f"no QR; hybridd scan of a minted QR exit {minted.rc}: "
                             f"{last_line(minted.output)} after {minted.t_end - minted.t_scan:.1f} s")
        hybrid, waited = self.rp.hybrid_transport, self.rp.hybrid_wait_ms
        if expect in ("pass", "untrusted") and hybrid is False:
            problems.append(f"Chromium's getClientCapabilities() reported no hybridTransport for {waited} ms")
        if expect == "no-adapter" and hybrid is True:
            problems.append("Chromium's getClientCapabilities() reported hybridTransport without an adapter")
        if hybrid and waited >= 100:
            lines.append(f"  (the page waited {waited} ms for Chromium to report hybridTransport)")
        ok = not problems
        if self.daemon is not None and self.daemon.poll() is not None:
            ok = False
            problems.append(f"hybridd run died ({self.daemon.returncode})")
        detail = "; ".join(problems) if problems else "ok"
        for line in lines:
            print(line, flush=True)
        if errors and expect == "pass":
            print(f"  (chromium FIDO error lines during a passing scenario: {len(errors)}; first: {errors[0]})")
        print(f"SCENARIO {mode}/{name}: {'PASS' if ok else 'FAIL'} ({detail}) in {time.time() - t_start:.1f} s",
              flush=True)
        return Result(mode, name, ok, detail, len(steps) if expect == "pass" else 0, lines, timings)


def read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def log_tail(path: str, n: int = 6) -> str:
    """The last `n` lines of a Chromium log that are not its usual D-Bus noise."""
    noise = ("dbus/", "Failed to connect to the bus", "unexpected operator")
    lines = [line.strip() for line in read(path).splitlines()
             if line.strip() and not any(x in line for x in noise)]
    return " | ".join(lines[-n:])[-1200:] or "(empty)"


def nth(xs: list[float], i: int) -> Optional[float]:
    return xs[i] if i < len(xs) else None


def ms(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None:
        return None
    return round((b - a) * 1000, 1)


def fmt(v: Optional[float]) -> str:
    return "?" if v is None else f"{v:.0f} ms"


def first(xs: list[str]) -> str:
    return xs[0] if xs else ""


def last_line(s: str) -> str:
    lines = [x for x in s.splitlines() if x.strip()]
    return lines[-1][:200] if lines else ""


# ---------------------------------------------------------------- plans

def plan_uv(tag: str) -> list[Step]:
    return [Step("create", tag, uv="required", attestation="direct"), Step("get", tag, uv="required")]


def plan_discoverable() -> list[Step]:
    return [Step("create", "d1", resident_key=True), Step("get", "d1", allow="empty")]


def plan_discoverable_pick() -> list[Step]:
    """Two more discoverable credentials for the RP, then a get with an empty
    allowCredentials: hybridd answers with numberOfCredentials and Chromium
    fetches the rest with getNextAssertion, then shows its account chooser,
    where the harness picks an account (any of them is a pass)."""
    labels = ["d1", "k1", "k2"]  # d1 exists if the discoverable scenario ran
    return [Step("create", "k1", resident_key=True), Step("create", "k2", resident_key=True),
            Step("get", "k2", allow="empty", accept=labels)]


def plan_prf() -> list[Step]:
    s1, s2 = b"hybridd interop salt one", b"hybridd interop salt two"
    return [
        Step("create", "p1", prf_salt=s1),  # 1
        Step("get", "p1", prf_salt=s1, prf_same_as=[1]),  # 2: as evaluated at creation
        Step("get", "p1", prf_salt=s1, prf_same_as=[2]),  # 3: stable
        Step("get", "p1", prf_salt=s2, prf_differs_from=[2]),  # 4: salt matters
        Step("create", "p2"),  # 5
        Step("get", "p2", prf_salt=s1, prf_differs_from=[2]),  # 6: credential matters
    ]


def plan_rounds(n: int) -> list[Step]:
    steps: list[Step] = []
    for i in range(1, n + 1):
        steps += [Step("create", f"r{i}"), Step("get", f"r{i}")]
    return steps


def plan_negative() -> list[Step]:
    return [Step("create", "n1", timeout_ms=120000)]


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--modes", default="bluez,file", help="bluez, file or both (comma-separated)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    ap.add_argument("--wait-for-desktop", type=int, default=10,
                    help="hybridd's wait for the desktop, seconds (negative paths wait this long)")
    ap.add_argument("--json", default="", help="write the results here as JSON")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    w = World(args)
    results: list[Result] = []

    def want(name: str) -> bool:
        return not only or name in only

    verdict = "FAIL (no scenario ran)"
    try:
        w.setup()
        for mode in filter(None, args.modes.split(",")):
            w.start_fake_bluez(mode)
            w.start_daemon(mode)
            if want("uv"):
                results.append(w.scenario(mode, "uv", plan_uv(f"u{mode[0]}")))
            if mode == "bluez":
                if want("discoverable"):
                    results.append(w.scenario(mode, "discoverable", plan_discoverable()))
                if want("discoverable-pick"):
                    results.append(w.scenario(
                        mode, "discoverable-pick", plan_discoverable_pick(),
                        chromium_logs=("kAuthenticatorGetNextAssertion", "UI step: kSelectAccount")))
                if want("prf"):
                    results.append(w.scenario(mode, "prf", plan_prf()))
                if want("notify-fingerprint"):
                    phone = NotifyPhone(w)
                    try:
                        phone.start(w.plain_url)
                        results.append(w.scenario(mode, "notify-fingerprint", plan_uv("nf"),
                                                  scanner=phone.scanner(), check=phone.check(2)))
                        print(f"  (notify-fingerprint: {phone.versions})", flush=True)
                    finally:
                        rc = phone.stop()
                    if rc != 0:
                        results.append(Result(mode, "notify-daemon-shutdown", False,
                                              f"hybridd run (notify) exited {rc} on SIGTERM"))
                if want("rounds"):
                    results.append(w.scenario(mode, f"rounds{args.rounds}", plan_rounds(args.rounds),
                                              timeout=60 + 15 * args.rounds))
            if want("untrusted"):
                results.append(w.scenario(mode, "untrusted-cert", plan_negative(), trusted=False,
                                          expect="untrusted", timeout=args.wait_for_desktop + 60))
                if want("uv"):
                    results.append(w.scenario(mode, "after-untrusted", plan_uv(f"a{mode[0]}")))
            if want("no-adapter"):
                w.start_fake_bluez(mode, adapter=False)
                results.append(w.scenario(mode, "no-adapter", plan_negative(), expect="no-adapter",
                                          timeout=args.wait_for_desktop + 60))
                w.start_fake_bluez(mode)
                if want("uv"):
                    results.append(w.scenario(mode, "after-no-adapter", plan_uv(f"b{mode[0]}")))
            rc = w.stop_daemon()
            if rc != 0:
                results.append(Result(mode, "daemon-shutdown", False, f"hybridd run exited {rc} on SIGTERM"))
        failed = [r for r in results if not r.ok]
        n = sum(r.ceremonies for r in results if r.ok)
        if not results:
            verdict = "FAIL (no scenario ran)"
        elif failed:
            verdict = "FAIL (" + "; ".join(f"{r.mode}/{r.name}: {r.detail}" for r in failed)[:600] + ")"
        else:
            verdict = f"PASS ({len(results)} scenarios, {n} ceremonies, {w.chromium_version})"
    except SetupError as e:
        verdict = f"FAIL (setup: {e})"
    finally:
        w.stop_daemon()
        w.procs.stop_all()
    summary(results, w.chromium_version)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"chromium": w.chromium_version, "verdict": verdict,
                       "results": [r.__dict__ for r in results]}, f, indent=1)
    print(f"CHROMIUM-INTEROP RESULT: {verdict}", flush=True)
    return 0 if verdict.startswith("PASS") else 1


def summary(results: list[Result], version: str) -> None:
    if not results:
        return
    print(f"\n{version}\n| mode | scenario | result | ceremonies | median total | max total |")
    print("|---|---|---|---|---|---|")
    for r in results:
        totals = sorted(t["total_ms"] for t in r.timings if t.get("total_ms") is not None)
        med = f"{totals[len(totals) // 2]:.0f} ms" if totals else "-"
        mx = f"{totals[-1]:.0f} ms" if totals else "-"
        print(f"| {r.mode} | {r.name} | {'PASS' if r.ok else 'FAIL'} | {r.ceremonies} | {med} | {mx} |")
    print()


if __name__ == "__main__":
    sys.exit(main())
