"""UpperDir: the overlay's upper layer kept on the host (``--overlay DIR``).

In a nutshell: the run works on the in-memory overlay (overlay.py) as with
``--overlay memory``; ``load`` fills its upper layer from ``DIR/upper`` at
start, and ``save`` writes the upper layer back when the sandbox ends. The
rootfs (the lower layer) is never written. Every host access to DIR goes
through a writable ``HostRoot`` (confined: no symlink in DIR, planted by
the guest or anyone else, leads outside it).

The format of ``DIR/upper``: a tree that mirrors the overlay's upper layer.

- Files, directories, symlinks and FIFOs made or changed by the guest are
  there with their content, mode, owner and times; hard links stay links.
  Unchanged lower entries are not copied.
- Each directory may hold ``.wh..wh..dir``, lines of ``KEY HEX``:
  ``whiteout HEX(name)`` (a lower entry deleted), ``opaque -`` (no lower
  below it: the guest made it), ``redirect HEX(path)`` (a lower directory
  the guest renamed: its content still comes from that rootfs path).
  A directory without the file takes its lower from its parent's lower
  plus its name. A guest entry of that exact name is not kept.

Saving writes ``DIR/upper.new.PID.RANDOM`` and swaps it with
``DIR/upper`` (renameat2 RENAME_EXCHANGE), so a crash leaves the previous
state whole (the staging of a Sentry that is gone is removed at the next
save).
Sockets, and changes to device files of the rootfs, are not kept. DIR is
made mode 0700 so the set-ID files a guest keeps there are no use to the
host's users. The whole upper layer is held in memory while a sandbox
runs (the overlay's budget applies); runs sharing a DIR at once: the last
to end wins.
"""
from __future__ import annotations

import errno
import os
import stat as S

from sentry.errors import SyscallError
from sentry.fs.hostroot import HostRoot
from sentry.fs.node import Stat, new_ino
from sentry.fs.overlay import OverlayFS, OvDir, OvFifo, OvFile, OvNode, OvSymlink

MARKER = b".wh..wh..dir"
_UPPER, _NEW = b"upper", b"upper.new"
RENAME_EXCHANGE = 2


class UpperDir:
    """The host directory ``path`` (created 0700 if missing) holding an
    overlay's upper layer. Raises ValueError if it cannot be used."""

    def __init__(self, path: str):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            self.host = HostRoot(path, writable=True)
        except OSError as e:
            raise ValueError(f"overlay directory {path!r}: {e.strerror}") from None

    def close(self) -> None:
        self.host.close()

    # --- load ---------------------------------------------------------------
    def load(self, fs: OverlayFS) -> None:
        """Fill ``fs`` (a fresh overlay) with the saved upper layer.
        Raises ValueError on a host error (e.g. ENOSPC of the budget)."""
        try:
            if S.S_ISDIR(self.host.lstat(_UPPER).st_mode):
                self._load_dir(fs, fs.root, _UPPER, {})
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise ValueError(f"overlay directory {self.host.path!r}: {os.strerror(e.errno)}") from None
        except RecursionError:
            raise ValueError(f"overlay directory {self.host.path!r}: nested too deep") from None

    def _load_dir(self, fs: OverlayFS, d: OvDir, rel: bytes, links: dict) -> None:
        h = self.host
        if rel != _UPPER:
            d.meta = _meta(fs, h.lstat(rel))
        for key, value in _read_marker(h, rel):
            if key == b"whiteout":
                d.whiteouts.add(value)
            elif key == b"opaque":
                d.lower = None
            elif key == b"redirect":
                d.lower = value if _lower_dir(fs, value) else None
        for name, _ino, _fmt in h.scandir(rel):
            if name == MARKER:
                continue
            crel = rel + b"/" + name
            st = h.lstat(crel)
            if S.S_ISDIR(st.st_mode):
                lower = _child_lower(d, name)
                child = OvDir(fs, lower if lower is not None and _lower_dir(fs, lower) else None, None)
                child.parent, child.name = d, name
                d.children[name] = child
                self._load_dir(fs, child, crel, links)
                continue
            node = links.get((st.st_dev, st.st_ino))
            if node is None:
                meta = _meta(fs, st)
                if S.S_ISREG(st.st_mode):
                    data = h.read_all(crel)
                    fs.charge(len(data))
                    node = OvFile(fs, None, meta, data)
                elif S.S_ISLNK(st.st_mode):
                    node = OvSymlink(fs, None, meta, h.readlink(crel))
                elif S.S_ISFIFO(st.st_mode):
                    node = OvFifo(fs, None, meta)
                else:
                    continue
                links[(st.st_dev, st.st_ino)] = node
            d.children[name] = node
        if d is not fs.root:  # the root's metadata is the rootfs's
            d.meta.st_nlink = 2 + sum(1 for _n, _i, t in d.readdir(None) if t == 4)  # DT_DIR

    # --- save ---------------------------------------------------------------
    def save(self, fs: OverlayFS) -> None:
        """Write ``fs``'s upper layer to DIR/upper, replacing what was
        there. Raises SyscallError on a host error, RecursionError for a
        tree nested too deep (DIR/upper unchanged either way)."""
        h = self.host
        for name, _ino, _fmt in h.scandir(b""):  # stagings of runs that died mid-save
            if name.startswith(_NEW) and not _alive(name):
                h.remove_tree(name)
        new = _NEW + b".%d.%s" % (os.getpid(), os.urandom(4).hex().encode())
        try:
            h.mkdir(new, 0o700)
            self._save_dir(fs, fs.root, new, b"", {})
            try:
                h.rename(new, _UPPER, RENAME_EXCHANGE)
            except SyscallError as e:
                if e.errno != errno.ENOENT:
                    raise
                h.rename(new, _UPPER)
        finally:
            h.remove_tree(new)

    def _save_dir(self, fs: OverlayFS, d: OvDir, rel: bytes, default_lower: bytes | None,
                  written: dict[int, bytes]) -> None:
        """Write changed directory ``d`` at ``rel`` (already made)."""
        h = self.host
        lines = [b"whiteout " + n.hex().encode() for n in sorted(d.whiteouts)]
        if d.lower != default_lower:
            lines.append(b"opaque -" if d.lower is None else b"redirect " + d.lower.hex().encode())
        if lines:
            h.write_file(rel + b"/" + MARKER, b"\n".join(lines) + b"\n", 0o600)
        for name, c in list(d.children.items()):
            if name == MARKER or not isinstance(c, OvNode):
                continue
            crel = rel + b"/" + name
            if isinstance(c, OvDir):
                lower = _child_lower(d, name)
                if _changed(c, lower):
                    h.mkdir(crel, 0o700)
                    self._save_dir(fs, c, crel, lower, written)
                continue
            if c.meta is None:
                continue  # an unchanged lower entry
            if id(c) in written:
                h.link(written[id(c)], crel)
                continue
            if isinstance(c, OvFile):
                data = c.data if c.data is not None else fs.host.read_all(c.lower)
                h.write_file(crel, bytes(data), 0o600)
            elif isinstance(c, OvSymlink):
                h.symlink(c.readlink(None), crel)
            elif isinstance(c, OvFifo):
                h.mkfifo(crel, 0o600)
            else:
                continue  # sockets, device files: not kept
            _set_meta(h, crel, c.meta)
            written[id(c)] = crel
        if d is not fs.root:
            _set_meta(h, rel, d.meta if d.meta is not None else d.stat())


def _child_lower(d: OvDir, name: bytes) -> bytes | None:
    """The lower path a subdirectory ``name`` of ``d`` has by default."""
    if d.lower is None:
        return None
    return d.lower + b"/" + name if d.lower else name


def _changed(d: OvDir, default_lower: bytes | None) -> bool:
    """Whether ``d`` or anything below it differs from the rootfs."""
    if d.meta is not None or d.whiteouts or d.lower != default_lower:
        return True
    return any(_changed(c, _child_lower(d, n)) if isinstance(c, OvDir) else
               isinstance(c, OvNode) and c.meta is not None for n, c in list(d.children.items()))


def _alive(staging: bytes) -> bool:
    """Whether the Sentry that made staging directory ``staging``
    (upper.new.PID.RANDOM) still runs."""
    try:
        pid = int(staging.split(b".")[2])
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return True


def _meta(fs: OverlayFS, st: os.stat_result) -> Stat:
    """Sentry-owned metadata for an entry loaded from DIR."""
    m = Stat.copy_of(st)
    m.st_dev, m.st_ino = fs.dev, new_ino()
    return m


def _set_meta(h: HostRoot, rel: bytes, m) -> None:
    """Mode, owner and times of ``m`` (a Stat or a host stat) on ``rel``
    (owner: only as root)."""
    if not S.S_ISLNK(m.st_mode):
        h.chmod(rel, m.st_mode & 0o7777)
    if os.geteuid() == 0:
        h.chown(rel, m.st_uid, m.st_gid)
    h.utime(rel, m.st_atime_ns, m.st_mtime_ns)


def _read_marker(h: HostRoot, rel: bytes) -> list[tuple[bytes, bytes | None]]:
    """(key, decoded value) of each well-formed line of rel's marker."""
    try:
        text = h.read_all(rel + b"/" + MARKER)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            return []
        raise
    out: list[tuple[bytes, bytes | None]] = []
    for line in bytes(text).splitlines():
        key, _, value = line.partition(b" ")
        try:
            decoded = bytes.fromhex(value.decode()) if value != b"-" else None
        except ValueError:
            continue
        if key == b"opaque" or (decoded and _good_name(key, decoded)):
            out.append((key, decoded))
    return out


def _good_name(key: bytes, value: bytes) -> bool:
    """A whiteout is one name; a redirect a relative path of names."""
    parts = value.split(b"/") if key == b"redirect" else [value]
    return all(p and p not in (b".", b"..") and b"\0" not in p and (key == b"redirect" or b"/" not in p)
               for p in parts)


def _lower_dir(fs: OverlayFS, rel: bytes) -> bool:
    """Whether the rootfs has a directory (not a link) at ``rel``."""
    try:
        return S.S_ISDIR(fs.host.lstat(rel).st_mode)
    except SyscallError:
        return False
