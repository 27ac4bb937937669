"""Escape attempts, on every platform: a real guest program (progs/
escape_attempts.c) tries to get out of ``--rootfs`` and the sandbox by
every route listed in docs/SECURITY.md, and reports each attempt; the host
side checks what the guest cannot see: the host files, listeners, hostname
and processes are unchanged, and no stub process remains.
"""
from __future__ import annotations

import errno
import hashlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from platforms import base
from test_processes import _stubs

MIN_ATTEMPTS = 180  # escape_attempts.c makes this many at least; fewer means it stopped early


def leaked_stubs(before: set[int], wait: float = 10.0) -> set[int]:
    """Stub processes not in ``before`` that outlived their Sentry (their
    parent is init now). Other sandboxes may run concurrently: their stubs
    still have a live parent. Waits up to ``wait`` seconds for teardown."""
    def orphans() -> set[int]:
        out = set()
        for pid in _stubs() - before:
            try:
                ppid = int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone
            if ppid == 1:
                out.add(pid)
        return out

    deadline = time.monotonic() + wait
    while (found := orphans()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _tree_digest(root: pathlib.Path) -> str:
    """Names, modes and contents of every entry under root (links unfollowed)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        for name in sorted(dirnames + filenames):
            p = pathlib.Path(dirpath, name)
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {st.st_mode:o} {st.st_rdev}\n".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def jail(tmp_path, cprog):
    """A rootfs holding the attack program, with traps the host left in it:
    symlinks out (absolute, relative, to a directory, to /bin/sh), device
    nodes (/dev/mem, /dev/kvm), a host unix socket. Next to it, outside:
    the secret and the place of a marker that must never appear."""
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET\n")
    shutil.copy(cprog("escape_attempts"), root / "prog")
    (root / "link_abs").symlink_to(secret)
    (root / "link_up").symlink_to("../secret")
    (root / "link_dir").symlink_to(tmp_path)
    (root / "link_bin").symlink_to("/bin/sh")
    for name, dev in (("mem", os.makedev(1, 1)), ("kvm", os.makedev(10, 232))):
        try:
            os.mknod(root / name, 0o600 | 0o020000, dev)
        except PermissionError:
            pass  # not root: the attempt then meets a missing node
    in_root = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    in_root.bind(str(root / "host.sock"))
    in_root.listen()
    host_unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    host_unix.bind(str(tmp_path / "host.sock"))
    host_unix.listen()
    abstract_name = f"sentry-escape-{os.getpid()}-{tmp_path.name}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    listeners = (in_root, host_unix, abstract, tcp)
    for s in listeners:
        s.setblocking(False)
    yield {"root": root, "secret": secret, "marker": tmp_path / "marker", "host_unix": tmp_path / "host.sock",
           "abstract": abstract_name, "port": tcp.getsockname()[1], "listeners": listeners}
    for s in listeners:
        s.close()


def _nobody_connected(listeners) -> list[str]:
    got = []
    for s in listeners:
        try:
            conn, _ = s.accept()
        except BlockingIOError:
            continue
        got.append(repr(s.getsockname()))
        conn.close()
    return got


def test_escape_attempts_all_fail(sentry, jail):
    before_tree, before_stubs = _tree_digest(jail["root"]), _stubs()
    hostname = socket.gethostname()
    lo = os.getpid()  # the test runner, then the Sentry, its stubs and anything started after
    got = sentry.run("/prog", "all", str(jail["secret"]), str(jail["marker"]), str(jail["port"]),
                     str(jail["host_unix"]), jail["abstract"], str(lo), str(lo + 400),
                     options=("--rootfs", str(jail["root"]), "--pids", "64", "--nofile", "64",
                              "--memory", "256M", "--timeout", "150", "--seccomp", "--network", "none"), timeout=180)
    out = got.stdout.decode(errors="replace")
    assert "ESCAPE" not in out, out
    last = out.strip().splitlines()[-1] if out.strip() else ""
    assert last.startswith("attempts ") and last.endswith(" escapes 0"), (out, got.stderr[-2000:])
    assert int(last.split()[1]) >= MIN_ATTEMPTS
    assert f"making {last.split()[1]} attempts" in _security_doc(), "update docs/SECURITY.md's count"
    assert got.returncode == 0, got.stderr[-2000:]
    # The stub part attacked what this platform keeps in the guest's address
    # space: kvm's supervisor-only private region (ring0 stub, IDT, GDT, page
    # tables, vCPU areas), the ptrace/vmexec stub's code (its syscall sites).
    counts = dict(re.findall(r"^(stub syscall sites|kvm private region attempts): (\d+)$", out, re.M))
    mine = "kvm private region attempts" if sentry.platform == "kvm" else "stub syscall sites"
    assert int(counts.get(mine, 0)) > 0, f"{sentry.platform}: no attempt on the platform's own memory\n{out}"
    # What the guest could not see for itself.
    assert jail["secret"].read_text() == "TOPSECRET\n"
    assert not jail["marker"].exists()
    assert _tree_digest(jail["root"]) == before_tree
    assert _nobody_connected(jail["listeners"]) == []
    assert socket.gethostname() == hostname
    assert not leaked_stubs(before_stubs)


def _security_doc() -> str:
    return (pathlib.Path(__file__).parent.parent / "docs" / "SECURITY.md").read_text()


def test_security_doc_counts_the_seccomp_allowlist():
    """docs/SECURITY.md says how many calls the Sentry's filter allows."""
    from sentry import seccomp_self

    m = re.search(r"`seccomp_self\.ALLOWED`: (\d+) calls", _security_doc())
    assert m and int(m.group(1)) == len(seccomp_self.ALLOWED), "update docs/SECURITY.md's count"


def test_escape_attempts_aim_at_the_platforms_private_memory():
    """escape_attempts.c's copy of the layouts (stub/stub-*.ld's base, kvm's
    private region in stub/native/kvm.c and stub/ring0.h) matches them."""
    repo = pathlib.Path(__file__).parent.parent
    prog = (repo / "tests/progs/escape_attempts.c").read_text()
    kvm = (repo / "stub/native/kvm.c").read_text() + (repo / "stub/ring0.h").read_text()

    def define(text: str, name: str) -> int:
        """The value of ``#define NAME EXPR``: a C constant expression of
        numbers, shifts and parentheses (no names)."""
        expr = re.search(rf"^#define {name} ([^/\n]+)", text, re.M).group(1)
        expr = re.sub(r"(?<=[0-9a-fA-F])[uUlL]+\b", "", expr)
        assert re.fullmatch(r"[0-9a-fA-FxX()<+* ]+", expr.strip()), expr
        return eval(expr)

    assert define(prog, "KVM_KBASE") == define(kvm, "KVM_KBASE")
    assert define(prog, "KVM_PRIV_SIZE") == define(kvm, "PRIV_SIZE")
    offsets = {int(v, 0) for v in re.findall(r'\{"[\w-]+", (0x[0-9a-f]+)\}', prog)}
    for name in ("OFF_STUB", "OFF_IDT", "OFF_GDT", "OFF_KPDPT", "OFF_KPD", "OFF_KROOT", "OFF_VCPUS", "OFF_POOL"):
        assert define(kvm, name) in offsets, name
    for name in ("R0_IRETQ", "R0_BATCH", "R0_LSTAR"):
        assert define(kvm, name) in offsets, name
    stubs = "".join(p.read_text() for p in (repo / "stub").glob("stub-*.ld"))
    assert hex(define(prog, "STUB_BASE")) in stubs.lower().replace("0x0000", "0x")


def test_sandbox_proc_shows_no_host_process(sentry):
    """Every pid under the sandbox's /proc is a sandbox process."""
    got = sentry.run("/bin/sh", "-c", "ls /proc | grep -E '^[0-9]+$'; echo end")
    pids = [int(p) for p in got.stdout.split()[:-1]]
    assert got.stdout.endswith(b"end\n") and pids and max(pids) < 100, got.stdout


@pytest.mark.parametrize("platform", ["ptrace", "vmexec"])  # kvm runs guest code on the Sentry's vCPUs: no stubs
def test_stubs_share_the_sandboxs_namespaces_not_the_hosts(platform):
    """The stubs of one sandbox (threads and processes of a guest) share
    the user, net, mount and ipc namespaces its first stub made, as
    gVisor's stubs share the sandbox's; each has a pid namespace of its
    own; none is the host's."""
    ok, why = base.lookup(platform).available()
    if not ok:
        pytest.skip(f"{platform}: {why}")
    script = "sleep 5 & sleep 5 & /usr/bin/python3.11 -c 'import threading, time; " \
             "threading.Thread(target=time.sleep, args=(5,)).start(); print(\"up\", flush=True)'"
    sentry = subprocess.Popen([sys.executable, "-m", "sentry", "run", "--platform", platform, "--", "/bin/sh", "-c",
                               script], stdout=subprocess.PIPE)
    try:
        assert sentry.stdout.readline() == b"up\n"
        kinds = ("user", "net", "mnt", "ipc", "pid")
        stubs = {}  # pid -> its namespaces; a stub that ends meanwhile (vmexec recycles them) is left out
        for pid in _stubs(sentry.pid):
            try:
                stubs[pid] = {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in kinds}
            except FileNotFoundError:
                pass
        assert len(stubs) >= 3, stubs  # the shell's, the sleeps', python's (ptrace: one per thread)
        host = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in kinds}
        for kind in kinds[:-1]:
            seen = {ns[kind] for ns in stubs.values()}
            assert len(seen) == 1 and host[kind] not in seen, (kind, seen)
        pid_namespaces = [ns["pid"] for ns in stubs.values()]
        assert len(set(pid_namespaces)) == len(stubs) and host["pid"] not in pid_namespaces
    finally:
        sentry.kill()
        sentry.wait()


def test_host_files_are_untouched_by_guest_writes(sentry, tmp_path):
    """The default root is the host / under a memory overlay: the guest may
    write anywhere and delete anything; the host sees none of it."""
    target = tmp_path / "victim"
    target.write_text("original\n")
    script = f"echo changed > {target}; rm -f {tmp_path}/victim2; mkdir {tmp_path}/newdir; cat {target}"
    (tmp_path / "victim2").write_text("keep\n")
    got = sentry.run("/bin/sh", "-c", script)
    assert got.stdout == b"changed\n", got.stderr
    assert target.read_text() == "original\n"
    assert (tmp_path / "victim2").exists() and not (tmp_path / "newdir").exists()


def test_execve_outside_rootfs_fails(sentry, jail):
    got = sentry.run("/bin/sh", "-c", "echo escaped", options=("--rootfs", str(jail["root"])))
    assert got.returncode == 127 and got.stdout == b""



def test_sentry_runs_under_its_seccomp_filter(sentry):
    cmd = [sys.executable, "-m", "sentry", "run", "--platform", sentry.platform, "--seccomp", "--",
           "/bin/sh", "-c", "echo ready; read x"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        status = pathlib.Path(f"/proc/{proc.pid}/status").read_text()
        assert "Seccomp:\t2" in status and "Seccomp_filters:\t1" in status, status
    finally:
        out, err = proc.communicate(b"\n", timeout=60)
    assert proc.returncode == 0, err


def test_seccomp_allowlist_denies_the_rest():
    """The filter itself: listed calls work, others are EPERM (no socket for
    a subverted Sentry, no chroot)."""
    code = "\n".join([
        "import os, socket, sys",
        "from sentry import seccomp_self",
        "seccomp_self.install()",
        "assert os.getpid() > 0",
        "try:",
        "    socket.socket(socket.AF_INET, socket.SOCK_STREAM)",
        "except PermissionError:",
        "    print('socket: EPERM', flush=True)",
        "try:",
        "    os.chroot('/')",
        "except PermissionError:",
        "    print('chroot: EPERM', flush=True)",
    ])
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         cwd=pathlib.Path(__file__).parent.parent)
    assert got.stdout == b"socket: EPERM\nchroot: EPERM\n", got.stderr
    assert got.returncode == 0


def test_calls_seccomp_lets_through_are_still_the_sentrys(sentry, cprog):
    """uretprobe (335) from outside the kernel's trampoline: ENOSYS from
    the Sentry, not the host's SIGILL (vmexec's stub filter cannot trap
    it). uprobe (336) runs on the host under vmexec alone and does nothing
    there but fail with ENXIO (docs/SECURITY.md)."""
    got = sentry.run(cprog("seccomp_exempt"))
    assert got.returncode == 0, got.stderr
    uprobe_errnos = {errno.ENOSYS, errno.ENXIO} if sentry.platform == "vmexec" else {errno.ENOSYS}  # ENXIO: Linux >= 6.16
    lines = got.stdout.decode().splitlines()
    assert lines[0] == f"335: -1 errno {errno.ENOSYS}", got.stdout
    assert lines[1].startswith("336: -1 errno ") and int(lines[1].split()[-1]) in uprobe_errnos, got.stdout
