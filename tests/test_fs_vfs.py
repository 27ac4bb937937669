"""The VFS from Python: confinement, overlay semantics, the host untouched.

Every test builds its own rootfs in a temp dir and checks, at the end, that
the host tree is byte-for-byte what it was (``host_tree`` fixture).
"""
from __future__ import annotations

import errno
import gc
import hashlib
import os
import stat

import pytest

from sentry.errors import ExecError, SyscallError
from sentry.fs.context import FSContext
from sentry.fs.file import O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY
from sentry.fs.overlay import RENAME_EXCHANGE, RENAME_NOREPLACE
from sentry.fs.vfs import VFS


def snapshot(root: str) -> dict[str, tuple]:
    """Everything observable about a host tree (names, types, modes, sizes,
    mtimes, content hashes, link targets)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(open(p, "rb").read()).hexdigest()
            else:
                extra = None
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink, extra)
    return out


@pytest.fixture
def rootfs(tmp_path):
    """A small rootfs with an escape-bait file next to it (outside)."""
    (tmp_path / "secret").write_text("host secret\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "marker").write_text("sandbox etc\n")
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_text("abc\n")
    (root / "a" / "other").write_text("other\n")
    (root / "bin").mkdir()
    (root / "bin" / "prog").write_bytes(b"\x7fELF" + bytes(100))
    os.chmod(root / "bin" / "prog", 0o755)
    (root / "abs_escape").symlink_to("/etc")
    (root / "rel_escape").symlink_to("../../../../../../../../etc")
    (root / "secret_link").symlink_to("../secret")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (root / "dangling").symlink_to("/nowhere/at/all")
    before = snapshot(str(tmp_path))
    yield str(root)
    assert snapshot(str(tmp_path)) == before, "the host tree changed"


@pytest.fixture
def vfs(rootfs):
    return VFS(rootfs=rootfs, overlay="memory")


@pytest.fixture
def fs(vfs):
    return FSContext.initial(vfs, "/")


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*args, **kw)
    return e.value.errno


def read(vfs, fs, path: bytes) -> bytes:
    f = vfs.open(fs, None, path, O_RDONLY)
    try:
        return f.read(1 << 20)
    finally:
        f.decref()


def write(vfs, fs, path: bytes, data: bytes, flags: int = O_CREAT | O_TRUNC) -> None:
    f = vfs.open(fs, None, path, O_WRONLY | flags, 0o644)
    try:
        assert f.write(data) == len(data)
    finally:
        f.decref()


def names(vfs, fs, path: bytes) -> set[bytes]:
    node = vfs.lookup(fs, None, path)
    return {n for n, _, _ in node.readdir(None)} | (set(node.mounts) if node.mounts else set())


# --- confinement --------------------------------------------------------------------
def test_dotdot_stops_at_the_sandbox_root(vfs, fs):
    assert read(vfs, fs, b"/../../../../etc/marker") == b"sandbox etc\n"
    assert read(vfs, fs, b"a/b/../../../../../../etc/marker") == b"sandbox etc\n"
    assert errno_of(read, vfs, fs, b"/../secret") == errno.ENOENT


def test_absolute_symlink_resolves_in_the_sandbox(vfs, fs):
    assert read(vfs, fs, b"/abs_escape/marker") == b"sandbox etc\n"
    assert errno_of(read, vfs, fs, b"/abs_escape/passwd") == errno.ENOENT  # host /etc/passwd not reachable


def test_relative_symlink_cannot_climb_out(vfs, fs):
    assert read(vfs, fs, b"/rel_escape/marker") == b"sandbox etc\n"
    assert errno_of(read, vfs, fs, b"/secret_link") == errno.ENOENT


def test_symlink_loops_and_limits(vfs, fs, rootfs):
    assert errno_of(vfs.lookup, fs, None, b"/loop1") == errno.ELOOP
    assert errno_of(vfs.lookup, fs, None, b"/dangling") == errno.ENOENT
    assert vfs.lookup(fs, None, b"/dangling", follow=False).readlink(None) == b"/nowhere/at/all"
    # a chain of exactly 40 links resolves; 41 is too many
    for i in range(41):
        vfs.symlink(fs, b"/etc/marker" if i == 0 else b"l%d" % (i - 1), None, b"/l%d" % i)
    assert read(vfs, fs, b"/l39") == b"sandbox etc\n"
    assert errno_of(read, vfs, fs, b"/l40") == errno.ELOOP


def test_path_errors(vfs, fs):
    assert errno_of(vfs.lookup, fs, None, b"/a/other/x") == errno.ENOTDIR
    assert errno_of(vfs.lookup, fs, None, b"/a/other/") == errno.ENOTDIR
    assert errno_of(vfs.lookup, fs, None, b"") == errno.ENOENT
    assert errno_of(vfs.lookup, fs, None, b"/" + b"x" * 256) == errno.ENAMETOOLONG
    assert errno_of(vfs.lookup, fs, None, b"/a" * 2048) == errno.ENAMETOOLONG
    assert errno_of(vfs.open, fs, None, b"/a/other", O_RDONLY | O_DIRECTORY) == errno.ENOTDIR
    assert errno_of(vfs.open, fs, None, b"/a", O_WRONLY) == errno.EISDIR
    assert errno_of(vfs.open, fs, None, b"/loop1", O_RDONLY | O_NOFOLLOW) == errno.ELOOP
    assert vfs.open(fs, None, b"/loop1", O_PATH | O_NOFOLLOW).path == "/loop1"


def test_paths_and_cwd(vfs, fs):
    fs.cwd = vfs.lookup(fs, None, b"/abs_escape")
    assert fs.cwd_path() == "/etc"
    f = vfs.open(fs, None, b"marker", O_RDONLY)
    assert f.path == "/etc/marker"
    assert vfs.open(fs, None, b"..", O_RDONLY).path == "/"
    assert FSContext.initial(vfs, "/a/b").cwd_path() == "/a/b"
    with pytest.raises(ExecError) as e:
        FSContext.initial(vfs, "/a/other")
    assert e.value.errno == errno.ENOTDIR and "/a/other" in e.value.message


def test_open_exec(vfs, fs):
    f, path = vfs.open_exec(fs, b"/bin/../bin/prog")
    assert path == "/bin/prog" and f.pread(4, 0) == b"\x7fELF"
    assert errno_of(vfs.open_exec, fs, b"/a/other") == errno.EACCES  # no exec bit
    assert errno_of(vfs.open_exec, fs, b"/a") == errno.EACCES
    assert errno_of(vfs.open_exec, fs, b"/nope") == errno.ENOENT


# --- overlay ------------------------------------------------------------------------
def test_write_copies_up_and_reads_back(vfs, fs, rootfs):
    f = vfs.open(fs, None, b"/a/b/file", O_RDWR)
    assert f.read(2) == b"ab"
    assert f.write(b"XY") == 2
    f.seek(0, 0)
    assert f.read(100) == b"abXY"
    assert vfs.lookup(fs, None, b"/a/b/file").stat().st_size == 4
    write(vfs, fs, b"/a/b/file", b"!", flags=O_APPEND)
    assert read(vfs, fs, b"/a/b/file") == b"abXY!"
    assert open(os.path.join(rootfs, "a/b/file")).read() == "abc\n"


def test_read_only_open_sees_later_copy_up(vfs, fs):
    r = vfs.open(fs, None, b"/a/other", O_RDONLY)
    key = r.mmap_identity()
    write(vfs, fs, b"/a/other", b"new")
    assert r.pread(100, 0) == b"new"
    assert r.mmap_identity() != key


def test_create_truncate_excl(vfs, fs):
    write(vfs, fs, b"/newfile", b"hello")
    assert read(vfs, fs, b"/newfile") == b"hello"
    assert errno_of(vfs.open, fs, None, b"/newfile", O_CREAT | O_EXCL | O_WRONLY) == errno.EEXIST
    st = vfs.lookup(fs, None, b"/newfile").stat()
    assert stat.S_IMODE(st.st_mode) == 0o644 & ~fs.umask
    vfs.open(fs, None, b"/newfile", O_WRONLY | O_TRUNC).decref()
    assert read(vfs, fs, b"/newfile") == b""
    # O_CREAT through a dangling symlink creates its target
    vfs.symlink(fs, b"/a/target", None, b"/link_to_new")
    write(vfs, fs, b"/link_to_new", b"via link")
    assert read(vfs, fs, b"/a/target") == b"via link"
    assert errno_of(vfs.open, fs, None, b"/nodir/x", O_CREAT | O_WRONLY) == errno.ENOENT
    assert errno_of(vfs.open, fs, None, b"/a", O_CREAT | O_WRONLY) == errno.EISDIR


def test_unlink_whiteout_and_recreate(vfs, fs):
    assert b"other" in names(vfs, fs, b"/a")
    vfs.unlink(fs, None, b"/a/other")
    assert errno_of(read, vfs, fs, b"/a/other") == errno.ENOENT
    assert b"other" not in names(vfs, fs, b"/a")
    write(vfs, fs, b"/a/other", b"reborn")
    assert read(vfs, fs, b"/a/other") == b"reborn"
    assert b"other" in names(vfs, fs, b"/a")
    assert errno_of(vfs.unlink, fs, None, b"/a/b") == errno.EISDIR
    assert errno_of(vfs.unlink, fs, None, b"/a/nope") == errno.ENOENT


def test_rmdir(vfs, fs):
    assert errno_of(vfs.rmdir, fs, None, b"/a/b") == errno.ENOTEMPTY
    assert errno_of(vfs.rmdir, fs, None, b"/a/other") == errno.ENOTDIR
    assert errno_of(vfs.rmdir, fs, None, b"/a/b/.") == errno.EINVAL
    vfs.unlink(fs, None, b"/a/b/file")
    vfs.rmdir(fs, None, b"/a/b")
    assert errno_of(vfs.lookup, fs, None, b"/a/b") == errno.ENOENT
    vfs.mkdir(fs, None, b"/a/b", 0o700)  # opaque: the old content stays hidden
    assert names(vfs, fs, b"/a/b") == set()
    assert errno_of(vfs.mkdir, fs, None, b"/a/b", 0o700) == errno.EEXIST
    assert errno_of(vfs.rmdir, fs, None, b"/proc") == errno.EBUSY


def test_rename_file_and_lower_directory(vfs, fs):
    vfs.rename(fs, None, b"/a/other", None, b"/etc/moved")
    assert read(vfs, fs, b"/etc/moved") == b"other\n"
    assert errno_of(vfs.lookup, fs, None, b"/a/other") == errno.ENOENT
    vfs.rename(fs, None, b"/a/b", None, b"/c")  # a host directory moves with its content
    assert read(vfs, fs, b"/c/file") == b"abc\n"
    assert b"b" not in names(vfs, fs, b"/a") and b"c" in names(vfs, fs, b"/")
    assert vfs.lookup(fs, None, b"/c/..") is vfs.root
    assert errno_of(vfs.rename, fs, None, b"/c", None, b"/c/inside") == errno.EINVAL
    assert errno_of(vfs.rename, fs, None, b"/c", None, b"/etc") == errno.ENOTEMPTY
    assert errno_of(vfs.rename, fs, None, b"/etc/moved", None, b"/c") == errno.EISDIR
    assert errno_of(vfs.rename, fs, None, b"/c", None, b"/etc/marker") == errno.ENOTDIR
    assert errno_of(vfs.rename, fs, None, b"/proc", None, b"/x") == errno.EBUSY
    assert errno_of(vfs.rename, fs, None, b"/etc/moved", None, b"/dev/moved") == errno.EXDEV


def test_rename_flags(vfs, fs):
    write(vfs, fs, b"/one", b"1")
    write(vfs, fs, b"/two", b"2")
    assert errno_of(vfs.rename, fs, None, b"/one", None, b"/two", RENAME_NOREPLACE) == errno.EEXIST
    vfs.rename(fs, None, b"/one", None, b"/two", RENAME_EXCHANGE)
    assert (read(vfs, fs, b"/one"), read(vfs, fs, b"/two")) == (b"2", b"1")
    vfs.rename(fs, None, b"/one", None, b"/two")
    assert read(vfs, fs, b"/two") == b"2"


def test_hard_link_shares_content(vfs, fs):
    vfs.link(fs, None, b"/a/other", None, b"/hard")
    assert vfs.lookup(fs, None, b"/hard").stat().st_nlink == 2
    write(vfs, fs, b"/hard", b"shared")
    assert read(vfs, fs, b"/a/other") == b"shared"
    assert errno_of(vfs.link, fs, None, b"/a", None, b"/dirlink") == errno.EPERM
    assert errno_of(vfs.link, fs, None, b"/a/other", None, b"/hard") == errno.EEXIST


def test_metadata_changes_stay_in_memory(vfs, fs, rootfs):
    node = vfs.lookup(fs, None, b"/a/other")
    vfs.setattr(node, mode=0o600, uid=1234, gid=99)
    st = node.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 1234, 99)
    assert stat.S_ISREG(st.st_mode)
    vfs.setattr(node, size=2)
    assert read(vfs, fs, b"/a/other") == b"ot"
    vfs.setattr(node, size=5)
    assert read(vfs, fs, b"/a/other") == b"ot\0\0\0"
    assert errno_of(vfs.setattr, vfs.lookup(fs, None, b"/a"), size=0) == errno.EISDIR


def test_readdir_merges_layers(vfs, fs):
    write(vfs, fs, b"/a/new", b"")
    vfs.unlink(fs, None, b"/a/other")
    vfs.mkdir(fs, None, b"/a/sub", 0o755)
    got = {n: t for n, _, t in vfs.lookup(fs, None, b"/a").readdir(None)}
    assert got == {b"b": 4, b"new": 8, b"sub": 4}
    assert {b"proc", b"dev", b"sys", b"etc"} <= names(vfs, fs, b"/")


def test_directory_link_counts(vfs, fs):
    a = vfs.lookup(fs, None, b"/a")
    n = a.stat().st_nlink
    vfs.mkdir(fs, None, b"/a/sub", 0o755)
    assert a.stat().st_nlink == n + 1
    vfs.rmdir(fs, None, b"/a/sub")
    assert a.stat().st_nlink == n


def test_overlay_none_is_read_only(rootfs):
    vfs = VFS(rootfs=rootfs, overlay="none")
    fs = FSContext.initial(vfs, "/")
    assert read(vfs, fs, b"/a/other") == b"other\n"
    assert errno_of(vfs.open, fs, None, b"/a/other", O_WRONLY) == errno.EROFS
    assert errno_of(vfs.open, fs, None, b"/new", O_CREAT | O_WRONLY) == errno.EROFS
    assert errno_of(vfs.unlink, fs, None, b"/a/other") == errno.EROFS
    assert errno_of(vfs.mkdir, fs, None, b"/d", 0o755) == errno.EROFS
    assert errno_of(vfs.rename, fs, None, b"/a/other", None, b"/x") == errno.EROFS
    assert errno_of(vfs.setattr, vfs.lookup(fs, None, b"/a/other"), mode=0) == errno.EROFS
    write(vfs, fs, b"/dev/shm/ok", b"tmpfs stays writable")


def test_bad_arguments():
    with pytest.raises(ValueError):
        VFS(rootfs="/", overlay="disk")
    with pytest.raises(ValueError):
        VFS(rootfs="/nonexistent-rootfs")


def test_getdents_records(vfs, fs):
    from abi.fs_structs import DIRENT64

    f = vfs.open(fs, None, b"/a", O_RDONLY | O_DIRECTORY)
    seen = []
    while True:
        buf = f.getdents(64)  # small buffer: several calls
        if not buf:
            break
        pos = 0
        while pos < len(buf):
            ino, off, reclen, dtype = DIRENT64.unpack_from(buf, pos)
            assert reclen % 8 == 0
            seen.append(buf[pos + DIRENT64.size:pos + reclen].rstrip(b"\0"))
            pos += reclen
    assert sorted(seen) == [b".", b"..", b"b", b"other"]
    with pytest.raises(SyscallError) as e:
        f.seek(0, 0) or f.getdents(10)  # one record does not fit
    assert e.value.errno == errno.EINVAL


def test_host_fds_do_not_leak(vfs, fs):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(300):
        f = vfs.open(fs, None, b"/a/other", O_RDONLY)
        kept = vfs.open(fs, None, b"/etc/marker", O_RDONLY)
        kept.decref()  # the guest closed it, but a mapping may still hold the object
        assert kept.pread(6, 0) == b"sandbox"[:6]
        f.decref()
        vfs.open_exec(fs, b"/bin/prog")  # dropped at once, as after a failed exec
    del f, kept
    assert len(os.listdir("/proc/self/fd")) <= before + 1


def test_volumes(vfs, fs, tmp_path_factory):
    vol = tmp_path_factory.mktemp("vol")
    (vol / "data").write_text("volume data\n")
    vfs.mount_volume(str(vol), "/a/mnt")
    vfs.mount_volume(str(vol), "/etc/ro", read_only=True)
    assert read(vfs, fs, b"/a/mnt/data") == b"volume data\n"
    assert b"mnt" in names(vfs, fs, b"/a")
    write(vfs, fs, b"/a/mnt/data", b"changed")
    assert read(vfs, fs, b"/a/mnt/data") == b"changed"
    assert read(vfs, fs, b"/etc/ro/data") == b"changed"  # writable volumes write to the host
    assert (vol / "data").read_text() == "changed"
    assert errno_of(write, vfs, fs, b"/etc/ro/new", b"x") == errno.EROFS
    assert errno_of(vfs.rename, fs, None, b"/a/mnt/data", None, b"/a/data") == errno.EXDEV
    assert vfs.lookup(fs, None, b"/a/mnt/..") is vfs.lookup(fs, None, b"/a")
    with pytest.raises(ValueError):
        vfs.mount_volume(str(vol), "/nonexistent/dir")
    with pytest.raises(ValueError):
        vfs.mount_volume(str(vol / "data"), "/x")
    with pytest.raises(ValueError):
        vfs.mount_volume(str(vol), "relative")


def test_memory_budget(vfs, fs):
    vfs.rootfs.size_limit = vfs.rootfs.used + 1000
    f = vfs.open(fs, None, b"/big", O_CREAT | O_RDWR, 0o644)
    assert f.pwrite(b"x" * 900, 0) == 900
    f.truncate(1 << 40)  # sparse, as tmpfs: the hole holds nothing
    assert f.pwrite(b"y", 1 << 39) == 1  # a far write holds what it writes
    assert vfs.rootfs.used == vfs.rootfs.size_limit - 1000 + 901
    assert errno_of(f.pwrite, b"z" * 200, 900) == errno.ENOSPC
    f.truncate(100)
    assert f.pwrite(b"z" * 800, 100) == 800
    f.decref()
    vfs.unlink(fs, None, b"/big")
    del f
    gc.collect()  # pytest.raises keeps tracebacks (and the file) in a cycle
    assert vfs.rootfs.used == vfs.rootfs.size_limit - 1000  # freed with the last reference



def test_mknod_socket_inode(vfs, fs):
    vfs.mknod(fs, None, b"/a/unbound", stat.S_IFSOCK | 0o600)
    assert stat.S_ISSOCK(vfs.lookup(fs, None, b"/a/unbound").stat().st_mode)
    assert errno_of(vfs.open, fs, None, b"/a/unbound", O_RDONLY) == errno.ENXIO
    assert errno_of(vfs.mknod, fs, None, b"/a/dev", stat.S_IFCHR | 0o600) == errno.EPERM


def test_o_tmpfile(vfs, fs):
    from sentry.fs.file import O_TMPFILE

    f = vfs.open(fs, None, b"/a", O_TMPFILE | O_RDWR, 0o600)
    assert f.path.startswith("/a/#") and f.stat().st_nlink == 0
    f.write(b"unnamed")
    assert b"b" in names(vfs, fs, b"/a") and len(names(vfs, fs, b"/a")) == 2  # no new name
    vfs.link_node(fs, f.node, None, b"/a/named")
    assert read(vfs, fs, b"/a/named") == b"unnamed" and f.stat().st_nlink == 1
    excl = vfs.open(fs, None, b"/a", O_TMPFILE | O_RDWR | O_EXCL, 0o600)
    assert errno_of(vfs.link_node, fs, excl.node, None, b"/a/never") == errno.ENOENT
    assert errno_of(vfs.open, fs, None, b"/a", O_TMPFILE | O_RDONLY) == errno.EINVAL
    assert errno_of(vfs.open, fs, None, b"/a/other", O_TMPFILE | O_RDWR) == errno.ENOTDIR
    assert errno_of(vfs.open, fs, None, b"/proc", O_TMPFILE | O_RDWR) == errno.EOPNOTSUPP
