"""--overlay DIR (changes kept across runs) and writable volumes (changes
made in the host directory), on every platform, plus their confinement:
no symlink in DIR or in a volume, planted on the host or made by the guest,
lets a write land outside it; the rootfs never changes."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat

import pytest

from sentry.errors import SyscallError
from sentry.fs.context import FSContext
from sentry.fs.file import O_CREAT, O_RDONLY, O_WRONLY
from sentry.fs.hostroot import HostRoot
from sentry.fs.upperdir import MARKER
from sentry.fs.vfs import VFS

BUSYBOX = shutil.which("busybox")
APPLETS = ("sh", "cat", "ls", "echo", "rm", "mv", "mkdir", "ln", "chmod", "stat", "readlink", "test")
needs_busybox = pytest.mark.skipif(not BUSYBOX, reason="busybox-static is not installed")


def digest(root) -> str:
    """One hash of everything observable in a host tree (names, types,
    modes, content, link targets, mtimes)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)} {st.st_mode:o} {st.st_mtime_ns}".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                h.update(open(p, "rb").read())
    return h.hexdigest()


def make_rootfs(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX or "/bin/true", root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("/bin/busybox")
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("inside\n")
    (root / "etc" / "gone").write_text("bye\n")
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "old").write_text("old\n")
    (root / "data" / "sub" / "deep").write_text("deep\n")
    (root / "tmp").mkdir()
    return root


def run(sentry, root, script: str, *options: str):
    got = sentry.run("/bin/sh", "-c", script, options=("--rootfs", str(root), *options), env={"PATH": "/bin"})
    assert got.returncode == 0, got.stderr
    return got.stdout.decode()


SHOW = ("cat /etc/new /etc/motd /moved/deep /data/renamed; readlink /made/link; cat /made/link; "
        "echo ==; ls /etc; echo ==; ls /data; echo ==; stat -c %a /etc/motd; "
        "test -e /etc/gone || echo gone; test -e /data/sub || echo sub-gone")
EXPECTED = ["new", "inside", "more", "deep", "old", "/etc/new", "new",
            "==", "motd", "new", "==", "renamed", "==", "600", "gone", "sub-gone"]


@needs_busybox
def test_overlay_dir_keeps_changes_across_runs(sentry, tmp_path):
    root = make_rootfs(tmp_path)
    upper = tmp_path / "upper"
    before = digest(root)
    first = ("echo new > /etc/new; echo more >> /etc/motd; rm /etc/gone; mv /data/sub /moved; "
             "mv /data/old /data/renamed; mkdir /made; ln -s /etc/new /made/link; chmod 600 /etc/motd; " + SHOW)
    assert run(sentry, root, first, "--overlay", str(upper)).splitlines() == EXPECTED
    assert stat.S_IMODE(os.stat(upper).st_mode) == 0o700
    assert digest(root) == before, "the rootfs changed"
    assert run(sentry, root, SHOW, "--overlay", str(upper)).splitlines() == EXPECTED
    # a third run changes more; the one after sees that too
    assert run(sentry, root, "rm /moved/deep /made/link; echo again > /etc/gone",
               "--overlay", str(upper)) == ""
    assert run(sentry, root, "ls /moved; ls /made; cat /etc/gone", "--overlay", str(upper)) == "again\n"
    # the memory overlay sees the pristine rootfs
    assert run(sentry, root, "ls /etc; cat /data/old", "--overlay", "memory") == "gone\nmotd\nold\n"
    assert digest(root) == before, "the rootfs changed"


@needs_busybox
def test_overlay_dir_symlinks_never_lead_out(sentry, tmp_path):
    root = make_rootfs(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    upper = tmp_path / "upper"
    (upper / "upper").mkdir(parents=True)
    (upper / "upper" / "evil").symlink_to(outside)  # planted on the host, absolute host path
    (upper / "upper.new.1.x").symlink_to(outside)  # a stale staging of a save
    out = run(sentry, root, "ln -s /etc /lnk; echo x > /evil/f 2>/dev/null || echo refused; "
                            "readlink /evil", "--overlay", str(upper))
    assert out == f"refused\n{outside}\n"
    assert run(sentry, root, "echo via > /lnk/x; cat /etc/x", "--overlay", str(upper)) == "via\n"
    assert os.listdir(outside) == []
    assert os.path.islink(upper / "upper" / "lnk") and (upper / "upper" / "etc" / "x").read_text() == "via\n"
    assert not (root / "etc" / "x").exists()


@needs_busybox
def test_volumes_write_to_the_host_or_refuse(sentry, tmp_path):
    root = make_rootfs(tmp_path)
    (root / "mnt").mkdir()
    (root / "ro").mkdir()
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    (vol / "keep").write_text("host\n")
    (vol / "drop").write_text("x\n")
    ro = tmp_path / "rovol"
    ro.mkdir()
    (ro / "f").write_text("ro\n")
    before_root, before_ro = digest(root), digest(ro)
    script = ("echo guest > /mnt/sub/made; echo more >> /mnt/keep; rm /mnt/drop; mkdir /mnt/dir; "
              "mv /mnt/keep /mnt/dir/kept; chmod 4755 /mnt/sub/made; stat -c %a /mnt/sub/made; "
              "cat /ro/f; { echo no > /ro/new; } 2>&1; { echo no >> /ro/f; } 2>&1; rm /ro/f 2>&1; true")
    out = run(sentry, root, script, "--volume", f"{vol}:/mnt", "--volume", f"{ro}:/ro:ro")
    lines = out.splitlines()
    assert lines[:2] == ["755", "ro"]  # set-ID bits are not stored on the host
    assert len(lines) == 5 and all("Read-only file system" in line for line in lines[2:])
    assert (vol / "sub" / "made").read_text() == "guest\n"
    assert stat.S_IMODE(os.stat(vol / "sub" / "made").st_mode) == 0o755
    assert (vol / "dir" / "kept").read_text() == "host\nmore\n"
    assert sorted(os.listdir(vol)) == ["dir", "sub"]
    assert digest(ro) == before_ro and digest(root) == before_root


@needs_busybox
def test_volume_symlinks_never_lead_out(sentry, tmp_path):
    root = make_rootfs(tmp_path)
    (root / "mnt").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "abs").symlink_to(outside)  # planted on the host
    (vol / "up").symlink_to("../outside")
    script = ("echo a > /mnt/abs/f 2>/dev/null || echo refused; echo b > /mnt/up/f 2>/dev/null || echo refused; "
              "ln -s / /mnt/root; echo c > /mnt/root/tmp/f; cat /tmp/f")
    assert run(sentry, root, script, "--volume", f"{vol}:/mnt") == "refused\nrefused\nc\n"
    assert os.listdir(outside) == []
    assert not (root / "tmp" / "f").exists() and os.readlink(vol / "root") == "/"


# --- the host side from Python ----------------------------------------------------------------
def test_hostroot_writes_are_confined(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    d = tmp_path / "d"
    d.mkdir()
    (d / "link").symlink_to(outside)
    (d / "file").write_text("x")
    h = HostRoot(str(d), writable=True)
    for call in (lambda: h.write_file(b"link/f", b"x", 0o644), lambda: h.mkdir(b"link/sub", 0o755),
                 lambda: h.symlink(b"/", b"link/s"), lambda: h.rename(b"file", b"link/file"),
                 lambda: h.chmod(b"link", 0o777), lambda: h.open(b"link/f", flags=os.O_CREAT | os.O_WRONLY, mode=0o644)):
        with pytest.raises(SyscallError) as e:
            call()
        assert e.value.errno in (errno.ELOOP, errno.ENOTDIR, errno.EOPNOTSUPP)
    h.utime(b"link", 0, 0)  # the link itself
    h.remove_tree(b"link")
    assert os.listdir(outside) == [] and not (d / "link").exists()
    ro = HostRoot(str(d))
    with pytest.raises(SyscallError) as e:
        ro.unlink(b"file")
    assert e.value.errno == errno.EROFS


def test_upper_keeps_hard_links_and_ignores_bad_markers(tmp_path):
    (tmp_path / "root" / "etc").mkdir(parents=True)
    upper = str(tmp_path / "upper")
    vfs = VFS(str(tmp_path / "root"), upper)
    fs = FSContext.initial(vfs, "/")
    f = vfs.open(fs, None, b"/etc/a", O_CREAT | O_WRONLY, 0o644)
    f.write(b"shared")
    f.decref()
    vfs.link(fs, None, b"/etc/a", None, b"/b")
    vfs.close()
    assert os.stat(os.path.join(upper, "upper", "b")).st_nlink == 2
    with open(os.path.join(upper, "upper", os.fsdecode(MARKER)), "w") as m:
        m.write("whiteout zz\nredirect " + b"../..".hex() + "\nwhiteout " + b"a/b".hex() + "\nnonsense\n")
    vfs = VFS(str(tmp_path / "root"), upper)
    fs = FSContext.initial(vfs, "/")
    assert vfs.lookup(fs, None, b"/b") is vfs.lookup(fs, None, b"/etc/a")
    g = vfs.open(fs, None, b"/b", O_RDONLY)
    assert g.read(100) == b"shared"
    g.decref()
    assert vfs.root.lower == b"" and not vfs.root.whiteouts
    vfs.close()


def test_bad_overlay_arguments(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError):
        VFS(str(tmp_path), "relative/dir")
    with pytest.raises(ValueError):
        VFS(str(tmp_path), str(tmp_path / "file"))


def test_upper_holds_only_changes(tmp_path):
    root = tmp_path / "root"
    (root / "x" / "y").mkdir(parents=True)
    (root / "x" / "y" / "f").write_text("lower\n")
    (root / "etc").mkdir()
    upper = tmp_path / "upper"
    vfs = VFS(str(root), str(upper))
    fs = FSContext.initial(vfs, "/")
    vfs.open(fs, None, b"/x/y/f", O_RDONLY).decref()  # looked up, cached, unchanged
    vfs.open(fs, None, b"/etc/a", O_CREAT | O_WRONLY, 0o644).decref()
    vfs.close()
    assert sorted(os.listdir(upper)) == ["upper"] and os.listdir(upper / "upper") == ["etc"]
    assert stat.S_IMODE(os.stat(upper / "upper" / "etc").st_mode) == stat.S_IMODE(os.stat(root / "etc").st_mode)


def test_volume_swap_race_stays_inside(tmp_path):
    """One thread swaps a volume directory with a symlink to outside while
    another writes through it: every write lands in the volume or fails."""
    import threading

    root = tmp_path / "root"
    (root / "mnt").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    vol = tmp_path / "vol"
    (vol / "d").mkdir(parents=True)
    vfs = VFS(str(root), "memory")
    vfs.mount_volume(str(vol), "/mnt")
    fs = FSContext.initial(vfs, "/")
    host = HostRoot(str(vol), writable=True)  # the host side swaps too
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            for call in (lambda: vfs.rename(fs, None, b"/mnt/d", None, b"/mnt/d2"),
                         lambda: host.symlink(os.fsencode(outside), b"d"), lambda: host.unlink(b"d"),
                         lambda: vfs.rename(fs, None, b"/mnt/d2", None, b"/mnt/d")):
                try:
                    call()
                except SyscallError:
                    pass

    t = threading.Thread(target=swap)
    t.start()
    try:
        for i in range(2000):
            try:
                vfs.open(fs, None, b"/mnt/d/f%d" % i, O_CREAT | O_WRONLY, 0o644).decref()
            except SyscallError:
                pass
    finally:
        stop.set()
        t.join()
    vfs.close()
    assert os.listdir(outside) == []
    assert any(os.scandir(vol))
