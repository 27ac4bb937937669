"""The VFS: the mount table, path resolution, and the path-based operations
the system calls use.

In a nutshell: ``_walk`` (behind ``lookup`` and ``resolve_parent``) walks a path one component at a time from the
caller's root or cwd (or a dirfd's directory). ``..`` at the sandbox root
stays there; ``..`` at a mount's root goes to the directory it is mounted
on; a symlink's target is spliced into the remaining components, with
absolute targets restarting at the *sandbox* root (whatever the host root
is); magic links (/proc/self/fd/N, cwd, root) jump to the node they stand
for; more than 40 links is ELOOP. Mount points are names in a directory's
``mounts`` dict, checked before the directory's own entries, so a rootfs
need not contain /proc or /dev.

The mount table: the overlay (or read-only) rootfs at /, a synthesized
/proc and /sys, a /dev tmpfs with the Sentry's devices and a tmpfs at
/dev/shm, volumes (``mount_volume``: a host directory passed through,
hostfs.py), and a tmpfs at /tmp when that is safe (``mount_tmp``, after
the volumes: gVisor's rule).

Permissions: checked as Linux does for the caller's effective ids; root
(the usual case here) skips every check but the exec bit, so the common
path never stats a host file just to allow the access.
"""
from __future__ import annotations

import errno
import os
import stat as S
import sys
from typing import TYPE_CHECKING

from sentry.errors import SyscallError
from sentry.fs.dev import make_devfs
from sentry.fs.file import (O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR,
                            O_TMPFILE, O_TRUNC, O_WRONLY, OpenFile)
from sentry.fs.node import R_OK, W_OK, X_OK, DirMoves, FileSystem, Node, err, may_access
from sentry.fs.hostfs import HostFS
from sentry.fs.overlay import OverlayFS
from sentry.fs.proc import ProcFS
from sentry.fs.sysfs import make_sysfs
from sentry.fs.upperdir import UpperDir

if TYPE_CHECKING:
    from sentry.fs.context import FSContext

MAXSYMLINKS = 40
PATH_MAX = 4096
NAME_MAX = 255
_DIR, _LNK = S.S_IFDIR, S.S_IFLNK
_DOTS = (b".", b"..")
_ACCESS = {O_RDONLY: R_OK, O_WRONLY: W_OK, O_RDWR: R_OK | W_OK, 3: R_OK | W_OK}


def creds_of(ctx):
    """The credentials a task acts with (None: the Sentry itself, as root)."""
    return ctx.group.creds if ctx is not None else None


def check_access(node: Node, creds, mask: int) -> None:
    """EACCES unless ``creds`` may access ``node`` for ``mask``."""
    if (creds is None or creds.euid == 0) and not mask & X_OK:
        return
    if not may_access(node.stat(), creds, mask):
        raise err(errno.EACCES)


def path_of(node: Node, root: Node) -> str:
    """The sandbox path of directory ``node`` seen from ``root``."""
    c = node.path_cache
    if c is not None and c[0] == DirMoves.count and c[1] is root:
        return c[2]
    path = _path_of(node, root)
    node.path_cache = (DirMoves.count, root, path)
    return path


def _path_of(node: Node, root: Node) -> str:
    names = []
    n = node
    while n is not root and n.parent is not None:
        names.append(n.name)
        n = n.parent
    if not names:
        return "/"
    names.reverse()
    return os.fsdecode(b"/" + b"/".join(names))


class VFS:
    """A sandbox's file systems. ``rootfs``: host directory shown as /;
    ``overlay``: "memory" (writable, changes kept in memory), "none"
    (read-only: writes fail with EROFS) or a host directory (changes kept
    there across runs: loaded now, saved at ``close``; see upperdir.py;
    made if missing).
    Raises ValueError on bad arguments (not a directory, an overlay
    directory that cannot be used)."""

    def __init__(self, rootfs: str = "/", overlay: str = "memory"):
        if overlay not in ("memory", "none") and not os.path.isabs(overlay):
            raise ValueError(f"unknown overlay {overlay!r}: expected 'memory', 'none' or an absolute directory path")
        if not os.path.isdir(rootfs):
            raise ValueError(f"rootfs {rootfs!r} is not a directory")
        self.rootfs = OverlayFS(rootfs, writable=overlay != "none")
        self.upper: UpperDir | None = None
        if overlay not in ("memory", "none"):
            self.upper = UpperDir(overlay)
            try:
                self.upper.load(self.rootfs)
            except ValueError:
                self.upper.close()
                self.rootfs.host.close()
                raise
        self.root: Node = self.rootfs.root
        self.mount_table: list[tuple[str, FileSystem]] = [("/", self.rootfs)]
        self.mount("/proc", ProcFS(self))
        self.mount("/sys", make_sysfs())
        self.mount("/dev", make_devfs())
        self.mount("/dev/shm", OverlayFS(None, root_mode=0o1777))

    # --- mounts ---------------------------------------------------------------
    def mount(self, path: str, fs: FileSystem) -> None:
        """Mount ``fs`` at absolute sandbox ``path``: its parent directory
        must exist (symlinks are not followed); the name itself need not.
        Raises ValueError otherwise."""
        raw = os.fsencode(path).rstrip(b"/")
        parent_path, name = os.path.split(raw)
        if not raw.startswith(b"/") or not name or name in _DOTS or b".." in parent_path.split(b"/"):
            raise ValueError(f"mount point {path!r} must be an absolute path without '..'")
        parent = self.root
        try:
            for comp in parent_path.split(b"/"):
                if comp and comp != b".":
                    parent = self.child(parent, comp, None)
        except SyscallError as e:
            raise ValueError(f"mount point {path!r}: parent directory: {os.strerror(e.errno)}") from None
        if parent.kind != _DIR:
            raise ValueError(f"mount point {path!r}: parent is not a directory")
        if parent.mounts is None:
            parent.mounts = {}
        parent.mounts[name] = fs.root
        fs.root.parent, fs.root.name = parent, name
        DirMoves.count += 1
        self.mount_table.append((os.fsdecode(raw), fs))

    def mount_volume(self, host: str, guest: str, read_only: bool = False) -> None:
        """Show host directory ``host`` at ``guest`` (--volume HOST:GUEST[:ro]),
        passed through (hostfs.py): the guest's changes are made in the host
        directory itself, confined to it; ``read_only``: they fail with
        EROFS. Raises ValueError on bad arguments."""
        if not os.path.isdir(host):
            raise ValueError(f"volume {host!r} is not a directory")
        fs = HostFS(host, writable=not read_only)
        try:
            self.mount(guest, fs)
        except ValueError:
            fs.host.close()
            raise

    def mount_tmp(self) -> bool:
        """Mount a tmpfs at /tmp, as gVisor does, unless that would hide
        something: a volume at /tmp, or a rootfs /tmp that is not an empty
        directory (its files stay visible, under the overlay). Call it after
        the volumes. True if the tmpfs was mounted."""
        if self.root.mounts and b"tmp" in self.root.mounts:
            return False
        try:
            tmp = self.child(self.root, b"tmp", None)
        except SyscallError:
            tmp = None  # no /tmp in the rootfs: the mount point need not exist
        if tmp is not None and (tmp.kind != _DIR or any(True for _ in tmp.readdir(None))):
            return False
        self.mount("/tmp", OverlayFS(None, root_mode=0o1777))
        return True

    def close(self) -> None:
        """Save the upper layer (--overlay DIR; a failure is reported on
        stderr in one line) and release the host directories the mounts
        hold open. Idempotent."""
        if self.upper is not None:
            try:
                self.upper.save(self.rootfs)
            except (SyscallError, RecursionError) as e:
                why = os.strerror(e.errno) if isinstance(e, SyscallError) else "nested too deep"
                print(f"sentry: overlay {self.upper.host.path}: not saved: {why}", file=sys.stderr)
            self.upper.close()
            self.upper = None
        for _path, fs in self.mount_table:
            host = getattr(fs, "host", None)
            if host is not None:
                host.close()

    def mounts_text(self) -> bytes:
        return "".join(f"{fs.fs_type} {p} {fs.fs_type} {self._opts(fs)} 0 0\n"
                       for p, fs in self.mount_table).encode()

    def mountinfo_text(self) -> bytes:
        lines = []
        for i, (p, fs) in enumerate(self.mount_table):
            dev = fs.dev if fs is not self.rootfs or fs.host is None else fs.host.dev
            lines.append(f"{i + 1} {1 if i else 0} {os.major(dev)}:{os.minor(dev)} / {p} {self._opts(fs)}"
                         f" - {fs.fs_type} {fs.fs_type} {self._opts(fs)}\n")
        return "".join(lines).encode()

    @staticmethod
    def _opts(fs: FileSystem) -> str:
        return "rw" if getattr(fs, "writable", True) else "ro"

    # --- resolution -----------------------------------------------------------
    def child(self, d: Node, name: bytes, ctx) -> Node:
        """``d``'s entry ``name`` (mounts first). Precondition: d is a dir,
        name is a single component other than '.' and '..'."""
        m = d.mounts
        if m is not None:
            c = m.get(name)
            if c is not None:
                return c
        return d.lookup(name, ctx)

    def resolve_parent(self, fs: "FSContext", start: Node | None, path: bytes,
                       ctx=None) -> tuple[Node, bytes, bool]:
        """(directory, last component, trailing slash) for operations that
        create or remove a name. The last component may be '.' or '..'
        (the path "/" gives '.'); callers reject those as Linux does."""
        d, name, _, trailing = self._walk(fs, start, path, False, ctx, True)
        return d, name, trailing  # type: ignore[return-value]

    def lookup(self, fs: "FSContext", start: Node | None, path: bytes, follow: bool = True, ctx=None) -> Node:
        return self._walk(fs, start, path, follow, ctx, False)[2]  # type: ignore[return-value]

    def _walk(self, fs: "FSContext", start: Node | None, path: bytes, follow_last: bool, ctx,
              stop_last: bool) -> tuple[Node | None, bytes, Node | None, bool]:
        if not path:
            raise err(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise err(errno.ENAMETOOLONG)
        root = fs.root
        cur = root if path[0] == 0x2F else (start if start is not None else fs.cwd)
        parts = path.split(b"/")
        parts.reverse()
        creds = creds_of(ctx)
        search = creds is not None and creds.euid != 0
        links = 0
        parent: Node | None = None
        name = b"."
        while parts:
            comp = parts.pop()
            if cur.kind != _DIR:
                raise err(errno.ENOTDIR)
            if not comp:
                continue
            if search and not may_access(cur.stat(), creds, X_OK):
                raise err(errno.EACCES)
            last = not any(parts)
            if last and stop_last:
                return cur, comp, None, bool(parts)
            if comp == b".":
                parent, name = None, comp
                continue
            if comp == b"..":
                if cur is not root and cur.parent is not None:
                    cur = cur.parent
                parent, name = None, comp
                continue
            if len(comp) > NAME_MAX:
                raise err(errno.ENAMETOOLONG)
            m = cur.mounts
            child = m.get(comp) if m is not None else None
            if child is None:
                child = cur.lookup(comp, ctx)
            if child.kind == _LNK and (not last or follow_last or parts):
                links += 1
                if links > MAXSYMLINKS:
                    raise err(errno.ELOOP)
                to = child.jump(ctx)
                if to is not None:
                    parent, name, cur = None, child.readlink(ctx), to
                    continue
                target = child.readlink(ctx)
                if not target:
                    raise err(errno.ENOENT)
                if target[0] == 0x2F:
                    cur = root
                more = target.split(b"/")
                more.reverse()
                parts.extend(more)
                continue
            parent, name, cur = cur, comp, child
        if stop_last:
            return cur, b".", None, False
        return parent, name, cur, False

    def path_for(self, fs: "FSContext", parent: Node | None, name: bytes, node: Node) -> str:
        """The sandbox path to record for ``node`` reached as (parent, name)."""
        if node.kind == _DIR:
            return path_of(node, fs.root)
        if parent is None:
            return os.fsdecode(name)
        base = path_of(parent, fs.root)
        return (base if base != "/" else "") + "/" + os.fsdecode(name)

    # --- operations -----------------------------------------------------------
    def open(self, fs: "FSContext", start: Node | None, path: bytes, flags: int, mode: int = 0,
             ctx=None) -> OpenFile:
        """open(2)/openat(2) semantics for ``path``. Raises SyscallError."""
        creds = creds_of(ctx)
        if flags & O_TMPFILE == O_TMPFILE:
            return self._open_tmpfile(fs, start, path, flags, mode, ctx)
        created = False
        if flags & O_CREAT:
            parent, name, node = self._open_create(fs, start, path, flags, mode, ctx)
            created = node is None
            if created:
                node = parent.create(name, mode & ~fs.umask & 0o7777, creds)
            elif node.kind == _DIR:
                raise err(errno.EISDIR)
        else:
            parent, name, node, _ = self._walk(fs, start, path, not flags & O_NOFOLLOW, ctx, False)
            if node.kind == _LNK and not flags & O_PATH:
                raise err(errno.ELOOP)
        if flags & O_DIRECTORY and node.kind != _DIR:
            raise err(errno.ENOTDIR)
        where = self.path_for(fs, parent, name, node)
        if flags & O_PATH:
            return OpenFile(node, where, flags)
        if not created:
            check_access(node, creds, _ACCESS[flags & O_ACCMODE] | (W_OK if flags & O_TRUNC else 0))
        return node.open(where, flags, ctx)

    def _open_tmpfile(self, fs, start, path, flags, mode, ctx) -> OpenFile:
        """O_TMPFILE: an unnamed file in the directory ``path``."""
        if flags & O_ACCMODE not in (O_WRONLY, O_RDWR):
            raise err(errno.EINVAL)
        d = self.lookup(fs, start, path, True, ctx)
        if d.kind != _DIR:
            raise err(errno.ENOTDIR)
        check_access(d, creds_of(ctx), W_OK | X_OK)
        node = d.tmpfile(mode & ~fs.umask & 0o7777, creds_of(ctx), linkable=not flags & O_EXCL)
        base = path_of(d, fs.root)
        where = f"{base if base != '/' else ''}/#{node.stat().st_ino}"
        return node.open(where, flags & ~O_TMPFILE, ctx)

    def _open_create(self, fs, start, path, flags, mode, ctx) -> tuple[Node | None, bytes, Node | None]:
        """(parent, name, existing node or None) for open with O_CREAT,
        following a symlink in the last component to its target."""
        d, name, trailing = self.resolve_parent(fs, start, path, ctx)
        for _ in range(MAXSYMLINKS + 1):
            if name in _DOTS:
                raise err(errno.EISDIR)
            try:
                node = self.child(d, name, ctx)
            except SyscallError as e:
                if e.errno != errno.ENOENT:
                    raise
                if trailing:
                    raise err(errno.EISDIR) from None
                check_access(d, creds_of(ctx), W_OK | X_OK)
                return d, name, None
            if flags & O_EXCL:
                raise err(errno.EEXIST)
            if node.kind != _LNK:
                return d, name, node
            if flags & O_NOFOLLOW:
                raise err(errno.ELOOP)
            to = node.jump(ctx)
            if to is not None:
                return None, node.readlink(ctx), to
            target = node.readlink(ctx)
            if not target:
                raise err(errno.ENOENT)
            d, name, trailing = self.resolve_parent(fs, d, target, ctx)
        raise err(errno.ELOOP)

    def open_exec(self, fs: "FSContext", path: bytes) -> tuple[OpenFile, str]:
        """Open ``path`` for execve: a regular file with an exec bit.
        Returns (file, absolute sandbox path). Raises SyscallError."""
        parent, name, node, _ = self._walk(fs, None, path, True, None, False)
        if node.kind != S.S_IFREG or not may_access(node.stat(), None, X_OK):
            raise err(errno.EACCES)
        where = self.path_for(fs, parent, name, node)
        return node.open(where, O_RDONLY, None), where

    def _parent_for_change(self, fs, start, path, ctx, dot: int, dotdot: int | None = None) -> tuple[Node, bytes, bool]:
        """resolve_parent for a change of the name; '.' and '..' as last
        component fail with ``dot`` / ``dotdot`` (default: ``dot``)."""
        d, name, trailing = self.resolve_parent(fs, start, path, ctx)
        if name == b".":
            raise err(dot)
        if name == b"..":
            raise err(dotdot or dot)
        if len(name) > NAME_MAX:
            raise err(errno.ENAMETOOLONG)
        check_access(d, creds_of(ctx), W_OK | X_OK)
        return d, name, trailing

    def _taken(self, d: Node, name: bytes) -> bool:
        return bool(d.mounts) and name in d.mounts

    def mkdir(self, fs: "FSContext", start: Node | None, path: bytes, mode: int, ctx=None) -> None:
        d, name, _ = self._parent_for_change(fs, start, path, ctx, errno.EEXIST)
        if self._taken(d, name):
            raise err(errno.EEXIST)
        d.mkdir(name, mode & ~fs.umask & 0o7777, creds_of(ctx))

    def mknod(self, fs: "FSContext", start: Node | None, path: bytes, mode: int, ctx=None) -> Node:
        """A regular file, FIFO or socket name at ``path``; ``mode`` holds
        the type bits. Returns the new node."""
        d, name, _ = self._parent_for_change(fs, start, path, ctx, errno.EEXIST)
        if self._taken(d, name):
            raise err(errno.EEXIST)
        return d.mknod(name, S.S_IFMT(mode) | (mode & ~fs.umask & 0o7777), creds_of(ctx))

    def unlink(self, fs: "FSContext", start: Node | None, path: bytes, ctx=None) -> None:
        d, name, trailing = self._parent_for_change(fs, start, path, ctx, errno.EISDIR)
        if self._taken(d, name):
            raise err(errno.EBUSY)
        if trailing:
            node = self.child(d, name, ctx)
            raise err(errno.EISDIR if node.kind == _DIR else errno.ENOTDIR)
        d.unlink(name)

    def rmdir(self, fs: "FSContext", start: Node | None, path: bytes, ctx=None) -> None:
        d, name, _ = self._parent_for_change(fs, start, path, ctx, errno.EINVAL, errno.ENOTEMPTY)
        if self._taken(d, name):
            raise err(errno.EBUSY)
        d.rmdir(name)

    def rename(self, fs: "FSContext", olddir: Node | None, oldpath: bytes, newdir: Node | None,
               newpath: bytes, flags: int = 0, ctx=None) -> None:
        od, on, otrail = self._parent_for_change(fs, olddir, oldpath, ctx, errno.EBUSY)
        nd, nn, ntrail = self._parent_for_change(fs, newdir, newpath, ctx, errno.EBUSY)
        if self._taken(od, on) or self._taken(nd, nn):
            raise err(errno.EBUSY)
        if (otrail or ntrail) and self.child(od, on, ctx).kind != _DIR:
            raise err(errno.ENOTDIR)
        if od.fs is not nd.fs:
            raise err(errno.EXDEV)
        od.rename(on, nd, nn, flags)

    def link(self, fs: "FSContext", olddir: Node | None, oldpath: bytes, newdir: Node | None,
             newpath: bytes, follow: bool = False, ctx=None) -> None:
        self.link_node(fs, self.lookup(fs, olddir, oldpath, follow, ctx), newdir, newpath, ctx)

    def link_node(self, fs: "FSContext", node: Node, newdir: Node | None, newpath: bytes, ctx=None) -> None:
        """A new name at ``newpath`` for ``node`` (linkat AT_EMPTY_PATH)."""
        d, name, _ = self._parent_for_change(fs, newdir, newpath, ctx, errno.EEXIST)
        if self._taken(d, name):
            raise err(errno.EEXIST)
        if node.kind == _DIR:
            raise err(errno.EPERM)
        if node.fs is not d.fs:
            raise err(errno.EXDEV)
        if node.stat().st_nlink == 0:
            if not getattr(node, "linkable", False):
                raise err(errno.ENOENT)  # an unlinked file stays unlinked
            node.linkable = False  # an O_TMPFILE file gets its one name
        d.link(name, node)

    def symlink(self, fs: "FSContext", target: bytes, start: Node | None, path: bytes, ctx=None) -> None:
        if not target:
            raise err(errno.ENOENT)
        if len(target) >= PATH_MAX:
            raise err(errno.ENAMETOOLONG)
        d, name, _ = self._parent_for_change(fs, start, path, ctx, errno.EEXIST)
        if self._taken(d, name):
            raise err(errno.EEXIST)
        d.symlink(name, target, creds_of(ctx))

    def readlink(self, fs: "FSContext", start: Node | None, path: bytes, ctx=None) -> bytes:
        node = self.lookup(fs, start, path, False, ctx)
        if node.kind != _LNK:
            raise err(errno.EINVAL)
        return node.readlink(ctx)

    def setattr(self, node: Node, ctx=None, **changes) -> None:
        """chmod/chown/truncate/utimens on ``node``: only root or the owner
        may change mode or times; only root may change owners."""
        creds = creds_of(ctx)
        if creds is not None and creds.euid != 0:
            st = node.stat()
            if "size" in changes:
                check_access(node, creds, W_OK)
            elif changes.get("uid") not in (None, st.st_uid) or st.st_uid != creds.euid:
                raise err(errno.EPERM)
        if "size" in changes and node.kind == _DIR:
            raise err(errno.EISDIR)
        node.setattr(**changes)
