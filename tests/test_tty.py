"""The user's terminal in the sandbox, as gVisor's host-TTY passthrough: a
pseudo-terminal (os.openpty) is `sentry run`'s stdin/stdout/stderr, on
every platform. ttyname works (/dev/pts/N is the host terminal's), termios
changes reach the terminal (raw mode for line editors) and are undone
however the sandbox ends; the foreground process group stays inside; every
other terminal ioctl (TIOCSTI above all) is refused."""
from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import threading

import pytest

from conftest import _clean_env


class Pty:
    """A pseudo-terminal for one test: ``slave`` is handed to the Sentry,
    a thread collects what appears on ``master`` (``expect`` waits for it)."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.name = os.ttyname(self.slave)
        self.before = termios.tcgetattr(self.slave)
        self.output = b""
        self.seen = 0  # expect looks after this offset of output
        self.procs: list[subprocess.Popen] = []  # killed at teardown if still running
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every slave fd closed
                chunk = b""
            with self.cond:
                if not chunk:
                    self.cond.notify_all()
                    return
                self.output += chunk
                self.cond.notify_all()

    def expect(self, text: bytes, timeout: float = 60) -> bytes:
        """Wait for ``text`` after what earlier calls saw; return the output
        up to its end."""
        with self.cond:
            assert self.cond.wait_for(lambda: text in self.output[self.seen:], timeout), self.output[self.seen:]
            start, self.seen = self.seen, self.output.index(text, self.seen) + len(text)
            return self.output[start:self.seen]

    def sentry(self, platform: str, script: str, *options: str, argv: tuple[str, ...] = (), **kw) -> subprocess.Popen:
        """`sentry run` of ``sh -c script`` (or of ``argv``) on the terminal."""
        argv = argv or ("/bin/sh", "-c", script)
        cmd = [sys.executable, "-m", "sentry", "run", "--platform", platform, *options, "--", *argv]
        kw.setdefault("stdout", self.slave)
        kw.setdefault("stderr", self.slave)
        kw.setdefault("env", _clean_env())
        proc = subprocess.Popen(cmd, stdin=self.slave, **kw)
        self.procs.append(proc)
        return proc

    def modes(self) -> list:
        return termios.tcgetattr(self.slave)

    def close(self) -> bytes:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        os.close(self.slave)
        self.reader.join(30)
        os.close(self.master)
        return self.output


@pytest.fixture
def pty():
    p = Pty()
    yield p
    p.close()


def test_tty_and_ttyname_name_the_terminal_as_natively(platform, pty):
    n = pty.name.removeprefix("/dev/pts/")
    want = subprocess.run(["tty"], stdin=pty.slave, capture_output=True, timeout=60)
    st = os.stat(pty.name)
    script = ("tty; python3 -c 'import os; print(os.ttyname(0))'; ls -A /dev/pts; "
              f"stat -c '%d %i %t:%T %F' /dev/pts/{n}; echo through-pts > /dev/pts/{n}")
    proc = pty.sentry(platform, script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert want.stdout == (pty.name + "\n").encode()
    assert out.decode().splitlines() == [
        pty.name, pty.name, n,  # only the guest's own terminal is in /dev/pts
        f"{st.st_dev} {st.st_ino} {os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x} character special file"]
    pty.expect(b"through-pts\r\n")  # /dev/pts/N opens as the same terminal


def test_dev_pts_is_empty_without_a_terminal(sentry):
    got = sentry.run("/bin/sh", "-c", "ls -A /dev/pts; tty", input=b"")
    assert got.returncode == 1, got.stderr
    assert got.stdout == b"not a tty\n"


def test_raw_mode_reaches_the_terminal_and_sigterm_restores_it(platform, pty):
    proc = pty.sentry(platform, "stty raw -echo; stty -a; echo READY; exec sleep 60")
    pty.expect(b"READY")
    inside = pty.modes()
    proc.send_signal(signal.SIGTERM)  # forwarded to the guest: sleep dies
    assert proc.wait(60) == 128 + signal.SIGTERM
    assert not inside[3] & (termios.ICANON | termios.ECHO | termios.ISIG)  # the terminal itself went raw
    assert not inside[1] & termios.OPOST
    stty = pty.output.split(b"READY")[0]
    assert b"-icanon" in stty and b"-echo " in stty and b"-isig" in stty
    assert pty.modes() == pty.before


def test_guest_killed_in_raw_mode_leaves_the_terminal_as_it_was(platform, pty):
    proc = pty.sentry(platform, "stty raw -echo && echo READY; kill -9 $$")
    assert proc.wait(90) == 128 + signal.SIGKILL
    pty.expect(b"READY")
    assert pty.modes() == pty.before


def test_timeout_in_raw_mode_leaves_the_terminal_as_it_was(platform, pty):
    proc = pty.sentry(platform, "stty raw -echo && echo READY; exec sleep 60", "--timeout", "5")
    assert proc.wait(90) == 124
    pty.expect(b"READY")  # the change happened before the timeout
    assert pty.modes() == pty.before


def test_cooked_read_waits_for_a_line(platform, pty):
    proc = pty.sentry(platform, 'echo WAITING; read line; echo "got:$line"')
    pty.expect(b"WAITING")
    os.write(pty.master, b"typed\r")
    assert proc.wait(90) == 0
    pty.expect(b"got:typed\r\n")


def test_line_editing_in_the_python_repl(platform, pty):
    """readline's raw mode: backspace, history (up arrow), then ^D; the
    terminal is cooked again afterwards."""
    env = {**_clean_env(), "TERM": "xterm", "INPUTRC": "/dev/null"}  # the same keys and output everywhere
    proc = pty.sentry(platform, "", argv=("/usr/bin/python3.11", "-q"), env=env)
    pty.expect(b">>> ")
    assert not pty.modes()[3] & termios.ICANON
    os.write(pty.master, b"print(40+3\x7f2)\r")
    assert b"\r\n42\r\n" in pty.expect(b">>> ")
    os.write(pty.master, b"x = 5\r")
    pty.expect(b">>> ")
    os.write(pty.master, b"\x1b[A\x7f7\r")  # the previous line, its 5 made 7
    pty.expect(b">>> ")
    os.write(pty.master, b"x\r")
    assert b"\r\n7\r\n" in pty.expect(b">>> ")
    os.write(pty.master, b"\x04")
    assert proc.wait(90) == 0
    assert pty.modes() == pty.before


def test_changes_through_dev_tty_are_restored(platform, pty):
    """The terminal as the Sentry's controlling terminal: /dev/tty opens it
    (a host fd of its own), and its changes are undone too."""
    def make_controlling():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = pty.sentry(platform, "stty raw -echo </dev/tty && stty -a | grep -q -- -icanon && echo READY; exit 3",
                      start_new_session=True, preexec_fn=make_controlling)
    assert proc.wait(90) == 3
    pty.expect(b"READY")
    assert pty.modes() == pty.before


# Guest Python: a child in a process group of its own takes the terminal,
# then does ``then``; the parent goes on once it has (pid: the child).
FOREGROUND_CHILD = """
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.tcsetpgrp(0, os.getpid())
    os.write(w, b'x')
    {then}
os.read(r, 1)
"""

GUEST_IOCTLS = r"""
import errno, fcntl, os, struct, sys, termios
def refused(name, request, arg):
    try:
        fcntl.ioctl(0, request, arg)
        print(name, 'allowed')
    except OSError as e:
        print(name, errno.errorcode[e.errno])
refused('TIOCSTI', termios.TIOCSTI, b'x')
refused('TIOCSWINSZ', termios.TIOCSWINSZ, struct.pack('HHHH', 1, 2, 0, 0))
refused('TIOCSETD', termios.TIOCSETD, struct.pack('i', 1))
refused('TIOCCONS', termios.TIOCCONS, 0)
refused('TIOCSCTTY', termios.TIOCSCTTY, 1)
refused('TCXONC', termios.TCXONC, termios.TCOOFF)
refused('TIOCLINUX', 0x541C, b'\x06')
refused('TCFLSH-bad', termios.TCFLSH, 7)
termios.tcflush(0, termios.TCIFLUSH)
a = termios.tcgetattr(0); a[3] &= ~termios.ECHO
termios.tcsetattr(0, termios.TCSAFLUSH, a)
print('echo', bool(termios.tcgetattr(0)[3] & termios.ECHO))
print('fg', os.tcgetpgrp(0) == os.getpgrp())
try:
    os.tcsetpgrp(0, 9999)
except OSError as e:
    print('tcsetpgrp', errno.errorcode[e.errno])
""" + FOREGROUND_CHILD.format(then="os._exit(0)") + r"""
os.waitpid(pid, 0)
print('child fg', os.tcgetpgrp(0) == pid)
try:
    os.tcsetpgrp(0, os.getpgrp())  # from the background, orphaned (init's group): EIO, as Linux
except OSError as e:
    print('from the background', errno.errorcode[e.errno])
import signal
signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # as a shell does
os.tcsetpgrp(0, os.getpgrp())
print('back', os.tcgetpgrp(0) == os.getpgrp())
"""


def test_terminal_ioctls_allowed_and_refused(platform, pty):
    fcntl.ioctl(pty.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    cmd = [sys.executable, "-m", "sentry", "run", "--platform", platform, "--", "/usr/bin/python3.11", "-c",
           GUEST_IOCTLS]
    got = subprocess.run(cmd, stdin=pty.slave, capture_output=True, timeout=90, env=_clean_env())
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().splitlines() == [
        "TIOCSTI ENOTTY", "TIOCSWINSZ ENOTTY", "TIOCSETD ENOTTY", "TIOCCONS ENOTTY", "TIOCSCTTY ENOTTY",
        "TCXONC ENOTTY", "TIOCLINUX ENOTTY", "TCFLSH-bad EINVAL",
        "echo False", "fg True", "tcsetpgrp ESRCH", "child fg True", "from the background EIO", "back True"]
    assert pty.modes() == pty.before
    assert struct.unpack("HHHH", fcntl.ioctl(pty.slave, termios.TIOCGWINSZ, bytes(8)))[:2] == (24, 80)
    assert struct.unpack("i", fcntl.ioctl(pty.slave, termios.FIONREAD, bytes(4)))[0] == 0  # nothing typed in
    assert select.select([pty.slave], [], [], 0)[0] == []


GUEST_JOB = """
import os, signal
signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # natively: tcsetpgrp from the background
""" + FOREGROUND_CHILD.format(then="os.execv('/bin/sleep', ['sleep', '60'])") + """
print('JOB RUNNING', flush=True)
_, status = os.waitpid(pid, 0)
os.tcsetpgrp(0, os.getpgrp())
print('job killed by', os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, flush=True)
"""


def test_interrupt_goes_to_the_foreground_job(platform, pty):
    """^C (SIGINT to the Sentry) goes to the process group the guest made
    the terminal's foreground, as a shell's job: the job dies, its shell
    (another group) lives on."""
    proc = pty.sentry(platform, "", argv=("/usr/bin/python3.11", "-c", GUEST_JOB))
    pty.expect(b"JOB RUNNING")
    proc.send_signal(signal.SIGINT)
    pty.expect(b"job killed by")
    assert pty.expect(b"\n").strip() == b"2"
    assert proc.wait(60) == 0


def _job_control_report(pty: Pty, proc: subprocess.Popen) -> list[str]:
    text = pty.expect(b"foreground again: ").decode()
    tail = pty.expect(b"\n").decode()
    assert proc.wait(60) == 0
    lines = (text + tail).replace("\r", "").splitlines()
    return [line for line in lines if line.startswith(("background ", "foreground "))]


def test_background_jobs_stop_as_natively(platform, pty, cprog):
    """SIGTTIN for a background read (EIO if blocked), SIGTTOU for a
    background write under TOSTOP and for a background termios change
    (through if ignored): the same as the program run natively with the
    terminal as its controlling terminal (setsid -c)."""
    prog = cprog("tty_jobs")
    native_run = subprocess.Popen(["setsid", "-c", prog], stdin=pty.slave, stdout=pty.slave, stderr=pty.slave)
    pty.procs.append(native_run)
    want = _job_control_report(pty, native_run)
    assert len(want) == 7, want
    got = _job_control_report(pty, pty.sentry(platform, "", argv=(prog,)))
    assert got == want
    assert pty.modes() == pty.before
