"""File systems seen by real programs under `sentry run`, on every platform:
the same answers as native, writes kept in the sandbox, the host untouched."""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import native
from test_fs_vfs import snapshot


def test_fs_calls_match_native(sentry, cprog, tmp_path):
    prog = cprog("fs_ops", "dynamic")
    (tmp_path / "native").mkdir()
    (tmp_path / "sandbox").mkdir()
    want = native(prog, str(tmp_path / "native"))
    assert want.returncode == 0, want.stderr
    before = snapshot(str(tmp_path / "sandbox"))
    got = sentry.run(prog, str(tmp_path / "sandbox"))
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().splitlines() == want.stdout.decode().splitlines()
    assert snapshot(str(tmp_path / "sandbox")) == before  # every change stayed in the Sentry


def test_guest_writes_and_reads_back_host_untouched(sentry, tmp_path):
    (tmp_path / "keep").write_text("original\n")
    before = snapshot(str(tmp_path))
    script = (f"cd {tmp_path} && echo new > made && cat made && echo changed > keep && cat keep"
              " && rm keep && ls && mkdir -p x/y && mv made x/y/ && ls x/y && cat /proc/self/comm")
    got = sentry.run("/bin/sh", "-c", script)
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"new\nchanged\nmade\nmade\ncat\n"
    assert snapshot(str(tmp_path)) == before


def test_ls_la_of_a_directory_matches_host(sentry):
    argv = ("/bin/ls", "-la", "--time-style=+%s", "/etc")
    want = native(*argv)
    got = sentry.run(*argv)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


def test_overlay_none_refuses_writes(sentry, tmp_path):
    got = sentry.run("/bin/sh", "-c", f"echo x > {tmp_path}/f", options=("--overlay=none",))
    assert got.returncode != 0
    assert b"Read-only file system" in got.stderr
    assert not (tmp_path / "f").exists()


BUSYBOX = shutil.which("busybox")


@pytest.mark.skipif(not BUSYBOX, reason="busybox-static is not installed")
def test_rootfs_confines_paths(sentry, tmp_path):
    """In a --rootfs, '..' and absolute symlinks stay inside it."""
    (tmp_path / "outside").write_text("host secret\n")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "cat", "ls", "echo"):
        (root / "bin" / applet).symlink_to("/bin/busybox")  # absolute: resolved in the sandbox
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("inside\n")
    (root / "abs").symlink_to("/etc")
    (root / "up").symlink_to("../../../../..")
    before = snapshot(str(tmp_path))
    script = ("cat /abs/motd; cat /up/etc/motd; cat /../outside /up/outside 2>&1; "
              "ls /up; echo w > /new; cat /new; echo ==; ls /proc/self/fd")
    got = sentry.run("/bin/sh", "-c", script, options=("--rootfs", str(root)), env={"PATH": "/bin"})
    assert got.returncode == 0, got.stderr
    lines = got.stdout.decode().splitlines()
    assert lines[:2] == ["inside", "inside"]
    assert "host secret" not in got.stdout.decode()
    assert lines[2].endswith("No such file or directory") and lines[3].endswith("No such file or directory")
    mark = lines.index("==")
    assert set(lines[4:mark - 1]) >= {"abs", "bin", "dev", "etc", "proc", "up"}
    assert lines[mark - 1] == "w" and lines[mark + 1:mark + 4] == ["0", "1", "2"]
    assert snapshot(str(tmp_path)) == before


def test_python_reads_proc_and_pipes(sentry):
    code = ("import os, subprocess; r, w = os.pipe(); os.write(w, b'ping'); os.close(w); "
            "print(os.read(r, 10), os.read(r, 10)); "
            "print(sorted(os.listdir('/proc/self/fd'))[:3], os.readlink('/proc/self/exe')); "
            "print(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[1:2])")
    got = sentry.run("/usr/bin/python3.11", "-c", code)
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().splitlines() == ["b'ping' b''", "['0', '1', '2'] /usr/bin/python3.11", "[b'-c']"]


PY_FILE_OPS = r"""
import os, shutil, sys, threading
os.chdir(sys.argv[1])
shutil.copyfile('/etc/passwd', 'pw')  # sendfile
print(open('pw', 'rb').read() == open('/etc/passwd', 'rb').read())
a, b = os.open('/etc/passwd', os.O_RDONLY), os.open('pw2', os.O_WRONLY | os.O_CREAT, 0o640)
print(os.copy_file_range(a, b, 100), os.lseek(b, 0, 1), os.lseek(a, 0, 1))
os.posix_fallocate(b, 0, 5000); print(os.fstat(b).st_size)
os.utime('pw2', (5, 7)); print(os.stat('pw2').st_mtime, oct(os.stat('pw2').st_mode))
os.utime('pw2', ns=(5, 123456789)); print(os.stat('pw2').st_mtime_ns)
os.mknod('reg', 0o600); print(oct(os.stat('reg').st_mode))
os.mkfifo('fifo'); print(oct(os.stat('fifo').st_mode))
w = threading.Thread(target=lambda: open('fifo', 'w').write('through a fifo')); w.start()
print(open('fifo').read()); w.join()
print(os.preadv(a, [bytearray(4)], 0, os.RWF_HIPRI))
print(sorted(os.listdir('.')))
try:
    os.mknod('dev', 0o600 | 0o020000, os.makedev(1, 3))
except OSError as e:
    print('mknod dev', e.errno)
"""


def test_python_file_ops_match_native(sentry, tmp_path):
    (tmp_path / "n").mkdir()
    (tmp_path / "s").mkdir()
    want = native("/usr/bin/python3.11", "-c", PY_FILE_OPS, str(tmp_path / "n"))
    assert want.returncode == 0, want.stderr
    got = sentry.run("/usr/bin/python3.11", "-c", PY_FILE_OPS, str(tmp_path / "s"))
    assert got.returncode == 0, got.stderr
    # root may make device nodes natively; the sandbox refuses (EPERM)
    assert got.stdout.splitlines()[:-1] == want.stdout.splitlines()
    assert got.stdout.splitlines()[-1] == b"mknod dev 1"
    assert list((tmp_path / "s").iterdir()) == []


def test_terminal_queries_and_changes_pass_through_changes_undone_at_exit(platform, tmp_path):
    import fcntl
    import os
    import struct
    import subprocess
    import sys
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    before = termios.tcgetattr(slave)
    code = ("import os, sys, termios\n"
            "print(os.isatty(1), tuple(os.get_terminal_size(1)), flush=True)\n"
            "a = termios.tcgetattr(1); a[3] &= ~termios.ECHO\n"
            "termios.tcsetattr(1, termios.TCSANOW, a)\n"
            "print('echo', bool(termios.tcgetattr(1)[3] & termios.ECHO))\n")
    with open(tmp_path / "out", "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "sentry", "run", "--platform", platform, "--",
                               "/usr/bin/python3.11", "-c", code], stdin=slave, stdout=slave, stderr=out, timeout=90)
    after = termios.tcgetattr(slave)
    os.close(slave)
    text = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        text += chunk
    os.close(master)
    assert proc.returncode == 0, (tmp_path / "out").read_bytes()
    assert text.replace(b"\r\n", b"\n") == b"True (111, 33)\necho False\n"  # the change reached the terminal
    assert after == before  # and was undone when the sandbox ended (tests/test_tty.py has more)


def test_signal_interrupts_a_read_of_host_stdin(platform):
    import subprocess
    import sys

    code = ("import os, signal\n"
            "def h(*a): raise TimeoutError\n"
            "signal.signal(signal.SIGALRM, h); signal.alarm(1)\n"
            "try:\n    os.read(0, 10)\nexcept TimeoutError:\n    print('interrupted')\n")
    proc = subprocess.Popen([sys.executable, "-m", "sentry", "run", "--platform", platform, "--",
                             "/usr/bin/python3.11", "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:  # stdin stays open and empty: only the signal can end the read
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert out == b"interrupted\n", err


def test_dev_stdin_and_stderr_reopen_host_stdio(sentry):
    got = sentry.run("/bin/sh", "-c", "cat /dev/stdin; echo to-stderr > /dev/stderr; echo x > /dev/stdin",
                     input=b"via /dev/stdin\n")
    assert got.stdout == b"via /dev/stdin\n"
    assert got.stderr.startswith(b"to-stderr\n")
    assert b"Permission denied" in got.stderr  # a read-only host fd is never reopened for writing


@pytest.mark.skipif(not BUSYBOX, reason="busybox-static is not installed")
def test_chroot_confines_like_the_sandbox_root(sentry, tmp_path):
    (tmp_path / "bin").mkdir()
    shutil.copy(BUSYBOX, tmp_path / "bin" / "busybox")
    (tmp_path / "inside").write_text("in the chroot\n")
    got = sentry.run("/usr/sbin/chroot", str(tmp_path), "/bin/busybox", "sh", "-c",
                     "/bin/busybox cat /../../inside; cd /..; /bin/busybox pwd; /bin/busybox ls /")
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"in the chroot\n/\nbin\ninside\n"


def test_advisory_locks_between_processes_match_native(sentry, cprog, tmp_path):
    prog = cprog("fs_locks", "dynamic")
    want = native(prog, str(tmp_path / "native"))
    assert want.returncode == 0, want.stderr
    got = sentry.run(prog, str(tmp_path / "sandbox"))
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout
    assert b"child wrlck wait: ok" in got.stdout  # F_SETLKW waited for the parent's close


def test_bad_working_directory_is_one_line(sentry):
    got = sentry.run("/bin/true", options=("--cwd", "/etc/passwd"))
    assert got.returncode == 126  # ENOTDIR, as for a program path
    assert got.stderr == b"sentry: cannot enter working directory /etc/passwd: Not a directory\n"


def test_large_reads_go_into_guest_memory_exactly(sentry, cprog, tmp_path):
    """1 MiB reads of a host file (straight into guest memory) give the
    host's bytes; a buffer that stops being writable gives a short read
    (as Linux), one not writable at all EFAULT; a child's read into
    copy-on-write memory stays its own."""
    data = tmp_path / "data"
    data.write_bytes(os.urandom(3 * (1 << 20) + 12345))
    prog = cprog("direct_read", "static")
    want = native(prog, str(data))
    assert want.returncode == 0, want.stderr
    assert b"read past the mapping: 524288, offset 524288\nread into read-only memory: -1\n" in want.stdout
    assert b"untouched 1" in want.stdout
    got = sentry.run(prog, str(data))
    assert (got.returncode, got.stdout) == (0, want.stdout), got.stderr
