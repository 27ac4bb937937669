"""splice, tee, vmsplice and sync_file_range.

In a nutshell: Linux moves page references between a pipe's ring and
other files; the Sentry's pipes hold bytes (sentry.fs.pipe), so here each
call copies between a ``Pipe``'s buffer and another file's read/write, with
Linux's rules (fs/splice.c) for arguments, waiting and results:

- splice(in, off_in, out, off_out, len, flags): one side is a pipe (or
  FIFO), and only the other side may have an offset (then it must be a
  file with positions, not a socket: EINVAL). pipe→pipe moves what the
  input holds and the output has room for; file→pipe reads at most the
  room left; pipe→file writes what the pipe holds (bytes a failed write
  could not take go back to the pipe's front).
- tee(in, out, len, flags): the same between two pipes, without consuming.
- vmsplice(fd, iov, n, flags): on a write end, a write of user memory into
  the pipe (what fits, without PIPE_BUF atomicity); on a read end, a read.
- A call that can move nothing waits, as read and write do (the kernel's
  wait queues; a signal ends it with ERESTARTSYS), unless SPLICE_F_NONBLOCK
  or (splice, tee) the pipe side is O_NONBLOCK: EAGAIN. It never waits for
  more once it moved something. A pipe with no reader is EPIPE and SIGPIPE.
- sync_file_range checks its arguments and syncs the whole file for
  SYNC_FILE_RANGE_WAIT_AFTER, as gVisor does.

Differences from Linux: room is counted in bytes, not page slots (Linux may
count a partly filled page as full); vmsplice copies (SPLICE_F_GIFT gives
nothing). The sandbox's stdio, when a host pipe, counts as a pipe for the
argument checks and is read or written as a file; tee cannot read one
without consuming it (EINVAL).

Lock order: the callees' (Pipe.lock; two pipes in ``pipe.transfer``).
"""
from __future__ import annotations

import errno
import stat as S

from sentry.errors import SyscallError
from sentry.fs.anon import AnonNode
from sentry.fs.file import O_APPEND, O_NONBLOCK, O_PATH, POLLIN, MAX_OFFSET, OpenFile, SeekableFile
from sentry.fs.pipe import Pipe, PipeEnd, transfer
from sentry.kernel.task import Task
from sentry.kernel.wait import WaitQueue, wait_until
from sentry.syscalls.files import MAX_RW, _sigpipe, _wait, _wait_ready, _write
from sentry.syscalls.spec import FD, Flags, Int, Ptr, Size, entries, partial, s32, s64, supported

SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT = 1, 2, 4, 8
SPLICE_F_ALL = 0xF
SPLICE_FLAGS = {1: "SPLICE_F_MOVE", 2: "SPLICE_F_NONBLOCK", 4: "SPLICE_F_MORE", 8: "SPLICE_F_GIFT"}
SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
SYNC_FLAGS = {1: "SYNC_FILE_RANGE_WAIT_BEFORE", 2: "SYNC_FILE_RANGE_WRITE", 4: "SYNC_FILE_RANGE_WAIT_AFTER"}


# --- helpers ---------------------------------------------------------------------
def _file(t: Task, fd: int) -> OpenFile:
    f = t.fds.get(s32(fd))
    if f.flags & O_PATH:
        raise SyscallError(errno.EBADF)  # as fdget: an O_PATH fd is no file here
    return f


def _pipe(f: OpenFile) -> Pipe | None:
    """The Sentry pipe ``f`` is an end of (a pipe or FIFO), else None."""
    return f.pipe if isinstance(f, PipeEnd) else None


def _is_pipe(f: OpenFile) -> bool:
    """A pipe natively: one of ours or a host pipe passed through (stdio)."""
    return isinstance(f, PipeEnd) or (f.node is not None and f.node.kind == S.S_IFIFO)


def _spliceable(f: OpenFile) -> None:
    """EINVAL for files Linux has no splice_read/splice_write for."""
    if f.is_directory or isinstance(f.node, AnonNode):
        raise SyscallError(errno.EINVAL)


def _positional(f: OpenFile) -> bool:
    """Whether ``f`` has positions (Linux's FMODE_PREAD/PWRITE): not a socket."""
    return isinstance(f, SeekableFile)


def _flags(flags: int) -> int:
    flags &= 0xFFFF_FFFF
    if flags & ~SPLICE_F_ALL:
        raise SyscallError(errno.EINVAL)
    return flags


def _load_offset(t: Task, ptr: int) -> int | None:
    return int.from_bytes(t.mm.copy_in(ptr, 8), "little", signed=True) if ptr else None


def _check_range(pos: int, length: int) -> None:
    """rw_verify_area: no negative offset, no range past the largest."""
    if pos < 0:
        raise SyscallError(errno.EINVAL)
    if pos + length > MAX_OFFSET:
        raise SyscallError(errno.EOVERFLOW)


def _wait_all(t: Task, files: tuple[OpenFile, ...], ready) -> None:
    """Block until ``ready()``, rechecked when any of ``files`` changes."""
    q = WaitQueue()
    for f in files:
        f.subscribe(q.notify)
    try:
        wait_until(t, [q], ready)
    finally:
        for f in files:
            f.unsubscribe(q.notify)


def _epipe(t: Task, e: SyscallError) -> SyscallError:
    if e.errno == errno.EPIPE:
        _sigpipe(t)
    return e


def _wait_room(t: Task, out: OpenFile, pipe: Pipe, nonblock: bool) -> int:
    """Linux's wait_for_space: the room in ``pipe`` once there is some
    (EPIPE with SIGPIPE if it has no reader; EAGAIN if ``nonblock``)."""
    while True:
        try:
            room = pipe.room()
        except SyscallError as e:
            raise _epipe(t, e) from None
        if room:
            return room
        if nonblock:
            raise SyscallError(errno.EAGAIN)
        _wait(t, out, lambda: pipe.readers == 0 or pipe.capacity > len(pipe.buf))


def _read_some(t: Task, f: OpenFile, length: int, nonblock: bool) -> bytes:
    """A read that waits for data unless ``nonblock`` or ``f`` is O_NONBLOCK."""
    while True:
        try:
            return f.read(length)
        except SyscallError as e:
            if e.errno != errno.EAGAIN or not f.can_block or nonblock or f.flags & O_NONBLOCK:
                raise
        _wait_ready(t, f, POLLIN)


# --- splice -------------------------------------------------------------------------
def sys_splice(t: Task, fd_in: int, off_in: int, fd_out: int, off_out: int, length: int, flags: int) -> int:
    if not length:
        return 0
    flags = _flags(flags)
    fin, fout = _file(t, fd_in), _file(t, fd_out)
    in_pipe, out_pipe = _is_pipe(fin), _is_pipe(fout)
    if (in_pipe and off_in) or (out_pipe and off_out):
        raise SyscallError(errno.ESPIPE)
    pos_in, pos_out = _load_offset(t, off_in), _load_offset(t, off_out)
    if not fin.readable or not fout.writable:
        raise SyscallError(errno.EBADF)
    length = min(length, MAX_RW)
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    ipipe, opipe = _pipe(fin), _pipe(fout)
    if in_pipe and out_pipe:
        if ipipe is not None and ipipe is opipe:
            raise SyscallError(errno.EINVAL)
        nonblock = nonblock or bool((fin.flags | fout.flags) & O_NONBLOCK)
        if ipipe is not None and opipe is not None:
            return _pipe_to_pipe(t, fin, fout, length, nonblock, consume=True)
    if in_pipe:
        _spliceable(fout)
        if pos_out is not None and not _positional(fout):
            raise SyscallError(errno.EINVAL)
        if fout.flags & O_APPEND:
            raise SyscallError(errno.EINVAL)
        _check_range(fout.offset if pos_out is None else pos_out, length)
        n = _pipe_to_file(t, fin, fout, pos_out, length, nonblock or bool(fin.flags & O_NONBLOCK))
        if pos_out is not None:
            t.mm.copy_out(off_out, (pos_out + n).to_bytes(8, "little"))
        return n
    if out_pipe:
        _spliceable(fin)
        if pos_in is not None and not _positional(fin):
            raise SyscallError(errno.EINVAL)
        _check_range(fin.offset if pos_in is None else pos_in, length)
        n = _file_to_pipe(t, fin, fout, pos_in, length, nonblock or bool(fout.flags & O_NONBLOCK))
        if pos_in is not None:
            t.mm.copy_out(off_in, (pos_in + n).to_bytes(8, "little"))
        return n
    raise SyscallError(errno.EINVAL)


def _pipe_to_pipe(t: Task, fin: PipeEnd, fout: PipeEnd, length: int, nonblock: bool, consume: bool) -> int:
    src, dst = fin.pipe, fout.pipe
    while True:
        try:
            return transfer(src, dst, length, consume)
        except SyscallError as e:
            if e.errno != errno.EAGAIN or nonblock:
                raise _epipe(t, e) from None
        _wait_all(t, (fin, fout), lambda: (bool(src.buf) or not src.writers)
                  and (dst.capacity > len(dst.buf) or not dst.readers))


def _pipe_to_file(t: Task, fin: OpenFile, fout: OpenFile, pos: int | None, length: int, nonblock: bool) -> int:
    """What the pipe holds (waiting for some), written to ``fout`` at
    ``pos`` (None: its own offset)."""
    data = _read_some(t, fin, length, nonblock)
    if not data:
        return 0  # EOF: no writer left
    n = 0
    try:
        if pos is not None:
            n = fout.pwrite(data, pos)
        else:
            n = _write(t, fout, data)  # waits for room in a socket; SIGPIPE on EPIPE
    finally:
        ipipe = _pipe(fin)
        if ipipe is not None:
            ipipe.unread(data[n:])  # a host pipe cannot take bytes back
    return n


def _file_to_pipe(t: Task, fin: OpenFile, fout: OpenFile, pos: int | None, length: int, nonblock: bool) -> int:
    """Read at most the room left in the pipe from ``fin`` at ``pos``
    (None: its own offset) into the pipe."""
    opipe = _pipe(fout)
    if opipe is None:  # a host pipe: a plain write, which may wait
        data = fin.pread(length, pos) if pos is not None else _read_some(t, fin, length, nonblock)
        return _write(t, fout, data) if data else 0
    length = min(length, _wait_room(t, fout, opipe, nonblock))
    data = fin.pread(length, pos) if pos is not None else _read_some(t, fin, length, nonblock)
    opipe.put(data)
    return len(data)


# --- tee ------------------------------------------------------------------------------
def sys_tee(t: Task, fd_in: int, fd_out: int, length: int, flags: int) -> int:
    flags = _flags(flags)
    if not length:
        return 0
    fin, fout = _file(t, fd_in), _file(t, fd_out)
    if not fin.readable or not fout.writable:
        raise SyscallError(errno.EBADF)
    ipipe, opipe = _pipe(fin), _pipe(fout)
    if ipipe is None or opipe is None or ipipe is opipe:
        raise SyscallError(errno.EINVAL)
    nonblock = bool(flags & SPLICE_F_NONBLOCK or (fin.flags | fout.flags) & O_NONBLOCK)
    return _pipe_to_pipe(t, fin, fout, min(length, MAX_RW), nonblock, consume=False)


# --- vmsplice -------------------------------------------------------------------------
def sys_vmsplice(t: Task, fd: int, iov: int, cnt: int, flags: int) -> int:
    flags = _flags(flags)
    f = _file(t, fd)
    if not (f.writable or f.readable):
        raise SyscallError(errno.EBADF)
    iovs = t.mm.read_iovecs(iov, cnt)
    total = min(sum(n for _, n in iovs), MAX_RW)
    if not total:
        return 0
    if not _is_pipe(f):
        raise SyscallError(errno.EBADF)
    nonblock = bool(flags & SPLICE_F_NONBLOCK)  # only the flag: Linux ignores O_NONBLOCK here
    pipe = _pipe(f)
    if f.writable:  # user memory into the pipe: a write without atomicity
        if pipe is None:
            return _write(t, f, _gather(t, iovs, total))
        n = min(total, _wait_room(t, f, pipe, nonblock))
        pipe.put(_gather(t, iovs, n))
        return n
    data = _read_some(t, f, total, nonblock)  # the pipe into user memory: a read
    pos = 0
    for base, n in iovs:
        chunk = data[pos:pos + n]
        if not chunk:
            break
        t.mm.copy_out(base, chunk)
        pos += len(chunk)
    return len(data)


def _gather(t: Task, iovs: list[tuple[int, int]], limit: int) -> bytes:
    parts = []
    for base, n in iovs:
        n = min(n, limit)
        if n:
            parts.append(t.mm.copy_in(base, n))
            limit -= n
    return b"".join(parts)


# --- sync_file_range ---------------------------------------------------------------
def sys_sync_file_range(t: Task, fd: int, offset: int, nbytes: int, flags: int) -> int:
    f = _file(t, fd)
    offset, nbytes, flags = s64(offset), s64(nbytes), flags & 0xFFFF_FFFF
    if flags & ~(SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER):
        raise SyscallError(errno.EINVAL)
    if offset < 0 or nbytes < 0 or offset + nbytes > MAX_OFFSET:
        raise SyscallError(errno.EINVAL)
    kind = f.node.kind if f.node is not None else 0
    if kind not in (S.S_IFREG, S.S_IFDIR, S.S_IFLNK, S.S_IFBLK):
        raise SyscallError(errno.ESPIPE)
    if flags & SYNC_FILE_RANGE_WAIT_AFTER:
        f.fsync()  # the whole file, data and metadata (as gVisor)
    return 0


ENTRIES = entries(
    partial("splice", sys_splice, args=(FD, Ptr, FD, Ptr, Size, Flags(SPLICE_FLAGS)),
            note="copies; pipe room counted in bytes, not pages"),
    partial("tee", sys_tee, args=(FD, FD, Size, Flags(SPLICE_FLAGS)), note="copies; not from a host pipe"),
    partial("vmsplice", sys_vmsplice, args=(FD, Ptr, Int, Flags(SPLICE_FLAGS)), note="copies (no SPLICE_F_GIFT)"),
    supported("sync_file_range", sys_sync_file_range, args=(FD, Int, Int, Flags(SYNC_FLAGS))),
)
