"""The `notify-fingerprint` scenario's phone: a second `hybridd run`,
configured as on a desktop (docs/operations.md, "From your desktop"), that
asks through a real notification server and verifies with a fingerprint.

`interop-desktop` (tools/src/bin) starts the real components through the
project's own harnesses (hybrid_desktop::testing, as
crates/hybridd/tests/desktop_ceremony.rs does), on private buses only:
dunst on a private session bus under the suite's Xvfb, and fprintd with
libfprint's virtual device (a finger enrolled) plus a polkit stand-in on
the suite's private system bus. Per QR code the harness then acts as the
person at the desk: `setsid hybridd scan - < qr.txt` (no terminal), waits
for the consent notification, picks Approve in dunst's context menu
(`dunstctl context`), and touches the virtual reader with the enrolled
finger once the daemon asks for it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from typing import Callable, Optional

FINGER = "right-index-finger"
ENROLLED = "interop-right-index"
APPROVE = "hybridd-approve"  # hybrid_desktop::notify::ACTION_APPROVE
SHOWN = "asking through a notification id="
TOUCH = "touch the fingerprint reader"
VERIFIED = "fingerprint verified"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# One step of the person (the notification, the approval, the finger) may take this long.
STEP_WAIT = 60.0


class NotifyPhone:
    def __init__(self, world) -> None:  # world: harness.World
        self.w = world
        self.dir = world.path("notify")
        self.env: dict = {}
        self.info: dict = {}
        self.desktop = None
        self.daemon = None
        self.scans = 0
        self.versions = ""

    def log(self) -> str:
        try:
            with open(self.w.path("logs/daemon-notify.log"), errors="replace") as f:
                return ANSI.sub("", f.read())
        except OSError:
            return ""

    def start(self, plain_url: str) -> None:
        w = self.w
        SetupError, log, wait_for = w.SetupError, w.log, w.wait_for
        for d in ("config/hybridd", "data", "runtime"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        os.chmod(os.path.join(self.dir, "runtime"), 0o700)
        self.versions = ", ".join(
            line.replace("\t", " ") for line in subprocess.run(
                ["dpkg-query", "-W", "dunst", "fprintd", "libfprint-2-2"], capture_output=True,
                text=True).stdout.splitlines())
        ready = os.path.join(self.dir, "desktop.ready")
        self.desktop = w.procs.start(
            [os.path.join(w.bin, "interop-desktop"), "--ready-file", ready, "--finger", FINGER,
             "--print", ENROLLED], w.path("logs/desktop.log"),
            env=w.env)
        wait_for(lambda: os.path.exists(ready) or self.desktop.poll() is not None, 60,
                 "interop-desktop (dunst, fprintd)")
        if self.desktop.poll() is not None:
            raise SetupError(f"interop-desktop exited with {self.desktop.returncode} (see logs/desktop.log)")
        with open(ready) as f:
            self.info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        with open(os.path.join(self.dir, "config/hybridd/config.toml"), "w") as f:
            # "interactive": a request without a terminal is asked through a
            # notification (the scan below has none).
            f.write('approval = "interactive"\nverify = "fingerprint"\n'
                    'fingerprint_fallback = "decline"\nfingerprint_attempts = 1\n')
        self.env = dict(w.env, XDG_CONFIG_HOME=os.path.join(self.dir, "config"),
                        XDG_DATA_HOME=os.path.join(self.dir, "data"),
                        XDG_RUNTIME_DIR=os.path.join(self.dir, "runtime"),
                        DBUS_SESSION_BUS_ADDRESS=self.info["session_bus"])
        w.sh([w.hybridd(), "vault", "init", "--pin-file", w.path("pin.txt")], "hybridd vault init (notify)",
             env=self.env)
        argv = [w.hybridd(), "run", "--tunnel-url", plain_url, "--wait-for-desktop-secs",
                str(w.args.wait_for_desktop)]
        log("notify daemon: " + " ".join(argv[1:]) + f" (config: approval interactive, verify fingerprint; "
            f"{self.versions})")
        self.daemon = w.procs.start(argv, w.path("logs/daemon-notify.log"), env=self.env)
        sock = os.path.join(self.dir, "runtime/hybridd/control.sock")
        wait_for(lambda: os.path.exists(sock) or self.daemon.poll() is not None, 20, "hybridd run (notify)")
        if self.daemon.poll() is not None:
            raise SetupError(f"hybridd run (notify) exited with {self.daemon.returncode}")
        out = w.sh([w.hybridd(), "unlock", "--pin-file", w.path("pin.txt")], "hybridd unlock", env=self.env)
        if "vault session open" not in out:
            raise SetupError(f"hybridd unlock said {out.strip()!r}")

    def stop(self) -> Optional[int]:
        rc = None
        if self.daemon is not None:
            rc = self.w.procs.stop(self.daemon, grace=10)
            self.daemon = None
        if self.desktop is not None:
            self.w.procs.stop(self.desktop, grace=10)
            self.desktop = None
        return rc

    # ---------------------------------------------------------------- a person
    def wait_log(self, needle: str, n: int, proc: subprocess.Popen) -> Optional[str]:
        """Waits (bounded) for the daemon's n-th `needle`; the text after it, or None."""
        deadline = time.time() + STEP_WAIT
        while time.time() < deadline:
            text = self.log()
            hits = [m.end() for m in re.finditer(re.escape(needle), text)]
            if len(hits) >= n:
                return text[hits[n - 1]:]
            if proc.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def dunstctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["dunstctl", *args], capture_output=True, text=True, timeout=10,
                              env=dict(self.env))

    def approve(self, nid: int) -> str:
        """Approve on notification `nid`, through dunst's context menu; an error or ''."""
        deadline = time.time() + 10
        while self.dunstctl("count", "displayed").stdout.strip() in ("", "0"):
            if time.time() > deadline:
                return "dunst never displayed the notification"
            time.sleep(0.05)
        with open(os.path.join(self.info["dunst_dir"], "choice"), "w") as f:
            f.write(f"{nid},{APPROVE}")
        r = self.dunstctl("context")
        return "" if r.returncode == 0 else f"dunstctl context: {r.stderr.strip()}"

    def touch(self, print_id: str) -> str:
        """The finger `print_id` touches the virtual reader (libfprint's
        virtual_device: one command per connection, read when it closes)."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(self.info["fprintd_socket"])
                s.sendall(f"SCAN {print_id}".encode())
                s.shutdown(socket.SHUT_WR)
                while s.recv(64):
                    pass
            return ""
        except OSError as e:
            return f"virtual reader: {e}"

    def scanner(self) -> Callable:
        def scan(s) -> None:
            self.scans += 1
            n = self.scans
            qr = os.path.join(self.dir, f"qr-{n}.txt")
            with open(qr, "w") as f:
                f.write(s.url + "\n")
            env = dict(self.env, HYBRIDD=self.w.hybridd(), QR=qr)
            s.t_scan = time.time()
            # setsid: no controlling terminal, as from a launcher or xdg-open.
            p = subprocess.Popen(["setsid", "-w", "sh", "-c", '"$HYBRIDD" scan - < "$QR"'],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=env, text=True)
            problem = ""
            after = self.wait_log(SHOWN, n, p)
            if after is None:
                problem = "the daemon never asked through a notification"
            else:
                problem = self.approve(int(after.split()[0]))
                if not problem:
                    if self.wait_log(TOUCH, n, p) is None:
                        problem = "the daemon never asked for the fingerprint"
                    else:
                        problem = self.touch(ENROLLED)
            try:
                out, _ = p.communicate(timeout=STEP_WAIT)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            s.t_end = time.time()
            s.rc = p.returncode if not problem else (p.returncode or 1)
            s.output = (out or "").strip() + (f"\n{problem}" if problem else "")
        return scan

    def check(self, ceremonies: int) -> Callable[[], list[str]]:
        def problems() -> list[str]:
            text = self.log()
            out = []
            for needle, what in ((SHOWN, "consent notifications"), (VERIFIED, "fingerprints verified")):
                got = text.count(needle)
                if got != ceremonies:
                    out.append(f"{got} {what} in the daemon's log for {ceremonies} ceremonies")
            return out
        return problems
