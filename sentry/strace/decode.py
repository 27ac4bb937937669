"""Argument decoding: one ``Arg`` kind of the system-call table → text.

In a nutshell: ``plan(entry, log_size)`` turns a table entry's argument
kinds into a ``Plan`` once per system call number: for each argument a
function shown on entry (``pre``), and for the arguments the call fills
(``Arg.after``) one shown on successful exit (``post``). Decoding at call
time is then a list walk, with no per-call lookups by kind.

The text follows gVisor's strace (pkg/sentry/strace): pointers in hex,
then what they point to (``0x7ffd1000 "/etc/passwd"``); buffers and
strings quoted, cut at ``log_size`` bytes with ``...``; flags as
``0x80000 (O_RDONLY|O_CLOEXEC)``; enums by name; structs as
``{field=value, ...}``; a null struct pointer as ``null``. A bad guest
pointer shows as ``0x10 (error decoding path: EFAULT)``: decoding never
raises.

Kinds (``Arg.kind``; the ``detail`` each takes):
  int, uint, size, hex, ptr     numbers (int: a signed 32-bit C int)
  oct, mode                     0o644 / S_IFREG|0o644
  fd                            AT_FDCWD, or the fd and its path when known
  path, str                     a C string (str may be cut)
  inbuf                         bytes sized by the next argument
  outbuf (after)                bytes sized by the result
  iniovec                       an iovec array (count: the next argument),
                                each element with its bytes (writev)
  outiovec (after)              the same, the bytes the call filled, in
                                order, sized by the result (readv)
  inmsghdr                      a struct msghdr: name, iovecs with their
                                bytes, control, flags (sendmsg)
  outmsghdr (after)             the same as the call filled it, the bytes
                                sized by the result (recvmsg)
  flags(table)                  bit → name table (``names.flag_names``)
  enum(table)                   value → name table
  openflags, cloneflags         O_* (with the access mode), CLONE_*|SIG*
  futexop                       FUTEX_WAIT_BITSET|FUTEX_PRIVATE_FLAG...
  signal                        a signal number
  argv                          a NULL-terminated array of strings
  struct(name)                  see ``STRUCTS``; ``iovec``/``pollfd`` take the
                                count, ``sockaddr`` the length, from the next
                                argument (a pointer to it for accept(2))
An unknown kind or struct name shows the raw value in hex.
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import struct as _struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from sentry.errors import SyscallError
from sentry.strace import names
from sentry.syscalls.spec import Arg, Syscall, s32, s64

if TYPE_CHECKING:
    from sentry.kernel.task import Task

Pre = Callable[["Task", tuple[int, ...], int], str]
Post = Callable[["Task", tuple[int, ...], int, int], str]

AT_FDCWD = -100
PATH_MAX = 4096
MAX_ARGV = 64  # argv/envp elements shown; the rest become "..."
MAX_ARRAY = 16  # iovec/pollfd elements shown
UIO_MAXIOV = 1024


# ------------------------------------------------------------ quoting

def _quote_table() -> dict[int, str]:
    table = {b: f"\\x{b:02x}" for b in range(256) if not 0x20 <= b < 0x7F}
    table.update({0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v",
                  ord('"'): '\\"', ord("\\"): "\\\\"})
    return table


_QUOTE = _quote_table()


def quote(data: bytes) -> str:
    """Go's %q for bytes, ASCII only: ``"a\\n\\x00"``."""
    return '"' + data.decode("latin-1").translate(_QUOTE) + '"'


def _fault(addr: int, what: str, e: SyscallError) -> str:
    return f"{addr:#x} (error decoding {what}: {e})"


def _pointed(addr: int, what: str, text: Callable[[], str]) -> str:
    """A pointer argument: ``null``, or ``0x1000 TEXT`` with ``text()``
    showing what it points to, or the fault that kept it from being read."""
    if addr == 0:
        return "null"
    try:
        return f"{addr:#x} {text()}"
    except SyscallError as e:
        return _fault(addr, what, e)


def _cstring(task: "Task", addr: int, limit: int) -> tuple[bytes, bool]:
    """The string at addr, at most ``limit`` bytes; True if it was cut."""
    try:
        return task.mm.read_cstring(addr, limit), False
    except SyscallError as e:
        if e.errno != 36:  # ENAMETOOLONG: longer than limit
            raise
    return task.mm.copy_in(addr, limit), True


def dump(task: "Task", addr: int, size: int, log_size: int) -> str:
    """``0x1000 "bytes"...``: at most log_size bytes of a guest buffer."""
    n = min(size, log_size)
    try:
        data = task.mm.copy_in(addr, n)
    except SyscallError as e:
        return _fault(addr, "buffer", e)
    return f"{addr:#x} {quote(data)}{'...' if n < size else ''}"


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(): 0s, 850ns, 45.123µs, 1.5ms, 2s, 1m30.5s."""
    if ns == 0:
        return "0s"
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _decimal(ns, 1000) + "µs"
    if ns < 1_000_000_000:
        return _decimal(ns, 1_000_000) + "ms"
    minutes, rest = divmod(ns, 60_000_000_000)
    hours, minutes = divmod(minutes, 60)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


# ------------------------------------------------------------ structs
# Each takes (task, addr, args, i) and returns the text after the address.

def _read(task: "Task", addr: int, fmt: _struct.Struct) -> tuple:
    return fmt.unpack(task.mm.copy_in(addr, fmt.size))


_TIMESPEC = _struct.Struct("<qq")
_STAT = _struct.Struct("<QQQIII4xQqqq qq qq qq 24x")
_RLIMIT = _struct.Struct("<QQ")
_SIGACTION = _struct.Struct("<QQQQ")
_STACK = _struct.Struct("<Qi4xQ")
_RLIM_INFINITY = (1 << 64) - 1


def _time_text(sec: int, nsec: int) -> str:
    try:
        when = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{sec}.{nsec:09d}"
    frac = f".{nsec:09d}".rstrip("0").rstrip(".")
    return f"{when:%Y-%m-%d %H:%M:%S}{frac} +0000 UTC"


def _s_timespec(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    sec, nsec = _read(task, addr, _TIMESPEC)
    return f"{{sec={sec} nsec={nsec}}}"


def _s_timeval(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    sec, usec = _read(task, addr, _TIMESPEC)
    return f"{{sec={sec} usec={usec}}}"


def _s_itimerspec(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    isec, insec, vsec, vnsec = _read(task, addr, _struct.Struct("<qqqq"))
    return f"{{interval={{sec={isec} nsec={insec}}}, value={{sec={vsec} nsec={vnsec}}}}}"


def _s_stat(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    (dev, ino, nlink, mode, uid, gid, rdev, size, blksize, blocks,
     asec, ansec, msec, mnsec, csec, cnsec) = _read(task, addr, _STAT)
    return (f"{{dev={dev}, ino={ino}, mode={names.file_mode(mode)}, nlink={nlink}, uid={uid}, gid={gid}, "
            f"rdev={rdev}, size={size}, blksize={blksize}, blocks={blocks}, atime={_time_text(asec, ansec)}, "
            f"mtime={_time_text(msec, mnsec)}, ctime={_time_text(csec, cnsec)}}}")


_STATX = _struct.Struct("<IIQIIIH2xQQQQ qI4x qI4x qI4x qI4x IIII")
_STATFS = _struct.Struct("<qqQQQQQ8xqqq")


def _s_statx(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    (mask, blksize, _attrs, nlink, uid, gid, mode, ino, size, blocks, _amask, asec, ansec, _bsec, _bnsec,
     csec, cnsec, msec, mnsec, rmaj, rmin, dmaj, dmin) = _read(task, addr, _STATX)
    return (f"{{mask={mask:#x}, dev={dmaj}:{dmin}, ino={ino}, mode={names.file_mode(mode)}, nlink={nlink}, "
            f"uid={uid}, gid={gid}, rdev={rmaj}:{rmin}, size={size}, blksize={blksize}, blocks={blocks}, "
            f"atime={_time_text(asec, ansec)}, mtime={_time_text(msec, mnsec)}, ctime={_time_text(csec, cnsec)}}}")


def _s_statfs(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    ftype, bsize, blocks, bfree, bavail, files, ffree, namelen, frsize, flags = _read(task, addr, _STATFS)
    return (f"{{type={ftype:#x}, bsize={bsize}, blocks={blocks}, bfree={bfree}, bavail={bavail}, files={files}, "
            f"ffree={ffree}, namelen={namelen}, frsize={frsize}, flags={flags:#x}}}")


def _s_rlimit(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    cur, top = _read(task, addr, _RLIMIT)
    show = lambda v: "RLIM_INFINITY" if v == _RLIM_INFINITY else str(v)  # noqa: E731
    return f"{{cur={show(cur)}, max={show(top)}}}"


def _s_sigset(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    return names.sigset_names(task.mm.read_u64(addr))


def _s_sigaction(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    handler, flags, restorer, mask = _read(task, addr, _SIGACTION)
    shown = {0: "SIG_DFL", 1: "SIG_IGN"}.get(handler, f"{handler:#x}")
    return (f"{{Handler: {shown}, Flags: {names.flag_names(flags, names.SA_FLAGS) or '0x0'}, "
            f"Restorer: {restorer:#x}, Mask: {names.sigset_names(mask)}}}")


def _s_stack(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    sp, flags, size = _read(task, addr, _STACK)
    return f"{{sp={sp:#x}, flags={names.flag_names(flags, names.SS_FLAGS) or '0x0'}, size={size}}}"


def _s_utsname(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    raw = task.mm.copy_in(addr, 65 * 6)
    fields = [raw[k * 65:(k + 1) * 65].split(b"\0", 1)[0] for k in range(6)]
    keys = ("sysname", "nodename", "release", "version", "machine", "domainname")
    return "{" + ", ".join(f"{k}={quote(v)}" for k, v in zip(keys, fields)) + "}"


def _s_sysinfo(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    uptime, _l1, _l5, _l15, total, free = _read(task, addr, _struct.Struct("<q3QQQ"))
    return f"{{uptime={uptime}, totalram={total}, freeram={free}}}"


def _s_rusage(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    us, uu, ss, su, maxrss = _read(task, addr, _struct.Struct("<qqqqq"))
    return f"{{utime={{sec={us} usec={uu}}}, stime={{sec={ss} usec={su}}}, maxrss={maxrss}}}"


def _next_arg(args: tuple[int, ...], i: int) -> int:
    """The argument after i (a count or length), 0 if there is none."""
    return args[i + 1] if i + 1 < len(args) else 0


def _sockaddr_text(data: bytes) -> str:
    if len(data) < 2:
        return "{}"
    family = int.from_bytes(data[:2], "little")
    fam = names.ADDRESS_FAMILIES.get(family, str(family))
    if family == 1:  # AF_UNIX: a path, or an abstract name after a NUL (shown as @"name")
        path = data[2:]
        shown = "@" + quote(path[1:]) if path[:1] == b"\0" else quote(path.split(b"\0", 1)[0])
        return f"{{Family: {fam}, Addr: {shown}}}"
    if family == 2 and len(data) >= 8:  # AF_INET
        port = int.from_bytes(data[2:4], "big")
        return f"{{Family: {fam}, Addr: {'.'.join(str(b) for b in data[4:8])}, Port: {port}}}"
    if family == 10 and len(data) >= 24:  # AF_INET6
        port = int.from_bytes(data[2:4], "big")
        return f"{{Family: {fam}, Addr: {ipaddress.IPv6Address(data[8:24])}, Port: {port}}}"
    if family == 16 and len(data) >= 12:  # AF_NETLINK
        pid, groups = _struct.unpack("<II", data[4:12])
        return f"{{Family: {fam}, PortID: {pid}, Groups: {groups}}}"
    return f"{{Family: {fam}}}"


def _s_sockaddr(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    return _sockaddr_text(task.mm.copy_in(addr, min(_next_arg(args, i), 128)))


def _s_sockaddr_filled(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    """A sockaddr the call filled: its length is behind a pointer in the
    next argument (accept, getsockname, recvfrom)."""
    length = task.mm.read_u32(_next_arg(args, i)) if _next_arg(args, i) else 0
    return _sockaddr_text(task.mm.copy_in(addr, min(length, 128)))


def _iovec_text(task: "Task", addr: int, count: int, log_size: int | None = None, filled: int | None = None) -> str:
    """``[{base=0x1000, len=6}, ...]``: the iovec array at ``addr`` (at
    most MAX_ARRAY elements shown). With ``log_size``, each element shows
    its bytes too, as gVisor's strace does: ``{base=0x1000, len=6,
    "hello "}``, at most ``log_size`` bytes in all (``...`` marks a cut);
    ``filled``: only the first ``filled`` bytes, in order, are data (a
    read's result; None: every element is whole). Raises SyscallError if
    the array itself cannot be read; an unreadable element says so."""
    if not 0 <= count <= UIO_MAXIOV:
        return "(error decoding iovecs: invalid iovcnt)"
    shown = min(count, MAX_ARRAY)
    items = []
    for base, length in _struct.iter_unpack("<QQ", task.mm.copy_in(addr, 16 * shown)):
        item = f"{{base={base:#x}, len={length}"
        if log_size is not None and length:
            data = length if filled is None else min(length, filled)
            n = min(data, log_size)
            if filled is not None:
                filled -= data
            log_size -= n
            try:
                item += f", {quote(task.mm.copy_in(base, n))}{'...' if n < data else ''}"
            except SyscallError as e:
                item += f", error decoding buffer: {e}"
        items.append(item + "}")
    return "[" + ", ".join(items) + (", ..." if shown < count else "") + "]"


def _s_pollfd(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    count = _next_arg(args, i)
    shown = min(count, MAX_ARRAY)
    raw = task.mm.copy_in(addr, 8 * shown)
    items = [f"{{fd={fd}, events={names.flag_names(ev, names.POLL_EVENTS) or '0'}, "
             f"revents={names.flag_names(rev, names.POLL_EVENTS) or '0'}}}"
             for fd, ev, rev in _struct.iter_unpack("<ihh", raw)]
    return "[" + ", ".join(items) + (", ..." if shown < count else "") + "]"


def _s_fdpair(task: "Task", addr: int, args: tuple[int, ...], i: int) -> str:
    a, b = _struct.unpack("<ii", task.mm.copy_in(addr, 8))
    return f"[{a} {b}]"


StructFn = Callable[["Task", int, tuple[int, ...], int], str]
STRUCTS: dict[str, StructFn] = {
    "timespec": _s_timespec, "timeval": _s_timeval, "itimerspec": _s_itimerspec, "stat": _s_stat,
    "statx": _s_statx, "statfs": _s_statfs,
    "rlimit": _s_rlimit, "sigset": _s_sigset, "sigaction": _s_sigaction, "stack_t": _s_stack,
    "utsname": _s_utsname, "sysinfo": _s_sysinfo, "rusage": _s_rusage, "sockaddr": _s_sockaddr,
    "pollfd": _s_pollfd, "fdpair": _s_fdpair,
}
STRUCTS_FILLED: dict[str, StructFn] = {"sockaddr": _s_sockaddr_filled}  # after the call, when it differs




def _struct_decoder(name: object, filled: bool = False) -> Pre:
    fn = None
    if isinstance(name, str):
        fn = (STRUCTS_FILLED.get(name) if filled else None) or STRUCTS.get(name)
    if fn is None:
        return _hex

    def decode(task: "Task", args: tuple[int, ...], i: int) -> str:
        return _pointed(args[i], str(name), lambda: fn(task, args[i], args, i))

    return decode


# ------------------------------------------------------------ scalars

def _hex(task: "Task", args: tuple[int, ...], i: int) -> str:
    return f"{args[i]:#x}"


def _int(task: "Task", args: tuple[int, ...], i: int) -> str:
    return str(s32(args[i]))


def _uint(task: "Task", args: tuple[int, ...], i: int) -> str:
    return str(args[i])


def _oct(task: "Task", args: tuple[int, ...], i: int) -> str:
    return f"0o{args[i]:o}"


def _mode(task: "Task", args: tuple[int, ...], i: int) -> str:
    return names.file_mode(args[i] & 0xFFFF_FFFF)


def _signal(task: "Task", args: tuple[int, ...], i: int) -> str:
    return names.signal_name(s32(args[i]))


def _fd(task: "Task", args: tuple[int, ...], i: int) -> str:
    """gVisor's fd(): ``AT_FDCWD /cwd``, ``0x3 /etc/passwd``, ``0x9 (bad FD)``."""
    fd = s32(args[i])
    if fd == AT_FDCWD:
        return f"AT_FDCWD {task.fs.cwd_path()}"
    if fd < 0:
        return str(fd)
    try:
        path = task.fds.get(fd).path
    except SyscallError:
        return f"{fd:#x} (bad FD)"
    return f"{fd:#x} {path}" if path else f"{fd:#x}"


def _memo(text: Callable[[int], str]) -> Pre:
    """A decoder of the value alone, remembering the last values seen
    (flag words repeat: the same few per call site)."""
    seen: dict[int, str] = {}

    def decode(task: "Task", args: tuple[int, ...], i: int) -> str:
        v = args[i]
        shown = seen.get(v)
        if shown is None:
            if len(seen) >= _MEMO_SIZE:
                seen.clear()
            shown = seen[v] = text(v)
        return shown

    return decode


_MEMO_SIZE = 256


def _flags(table: object) -> Pre:
    if not isinstance(table, dict):
        return _hex

    def text(v: int) -> str:
        shown = names.flag_names(v, table)
        return f"{v:#x} ({shown})" if shown else f"{v:#x}"

    return _memo(text)


def _named(fn: Callable[[int], str], mask: int = 0xFFFF_FFFF) -> Pre:
    return _memo(lambda v: f"{v & mask:#x} ({fn(v & mask)})")


def _enum(table: object) -> Pre:
    if not isinstance(table, dict):
        return _hex

    def decode(task: "Task", args: tuple[int, ...], i: int) -> str:
        v = args[i]
        name = table.get(v)
        if name is None:
            name = table.get(s32(v)) if v < 1 << 32 else None
        return name if name is not None else f"{v:#x}"

    return decode


def _text(log_size: int, limit: int | None = None) -> Pre:
    def decode(task: "Task", args: tuple[int, ...], i: int) -> str:
        addr = args[i]
        try:
            data, cut = _cstring(task, addr, limit or log_size)
        except SyscallError as e:
            return _fault(addr, "path" if limit else "string", e)
        if len(data) > log_size:
            data, cut = data[:log_size], True
        return f"{addr:#x} {quote(data)}{'...' if cut else ''}"

    return decode


def _inbuf(log_size: int) -> Pre:
    def decode(task: "Task", args: tuple[int, ...], i: int) -> str:
        size = args[i + 1] if i + 1 < len(args) else 0
        return dump(task, args[i], size, log_size)

    return decode


def _outbuf(log_size: int) -> Post:
    def decode(task: "Task", args: tuple[int, ...], i: int, result: int) -> str:
        return dump(task, args[i], result, log_size)

    return decode


def _iovec_contents(log_size: int) -> Callable[..., str]:
    """The decoder of ``iniovec`` (on entry: ``result`` None) and of
    ``outiovec`` (after the call: sized by ``result``)."""
    def decode(task: "Task", args: tuple[int, ...], i: int, result: int | None = None) -> str:
        return _pointed(args[i], "iovec",
                        lambda: _iovec_text(task, args[i], s32(_next_arg(args, i)), log_size, result))

    return decode


_MSGHDR = _struct.Struct("<QI4xQQQQi4x")


def _msghdr_contents(log_size: int) -> Callable[..., str]:
    """The decoder of ``inmsghdr`` (on entry: ``result`` None) and of
    ``outmsghdr`` (after the call: the iovecs' bytes sized by ``result``),
    as gVisor shows a msghdr: ``{name=..., namelen=16, iovecs=[...],
    control={base=0x0, len=0}, flags=0}``."""
    def decode(task: "Task", args: tuple[int, ...], i: int, result: int | None = None) -> str:
        return _pointed(args[i], "msghdr", lambda: _msghdr_text(task, args[i], log_size, result))

    return decode


def _msghdr_text(task: "Task", addr: int, log_size: int, filled: int | None) -> str:
    name, namelen, iov, iovlen, control, controllen, flags = _read(task, addr, _MSGHDR)
    shown_name = f"{name:#x}" if not (name and namelen) else \
        _pointed(name, "sockaddr", lambda: _sockaddr_text(task.mm.copy_in(name, min(namelen, 128))))
    iovecs = _iovec_text(task, iov, min(iovlen, UIO_MAXIOV + 1), log_size, filled)
    return (f"{{name={shown_name}, namelen={namelen}, iovecs={iovecs}, "
            f"control={{base={control:#x}, len={controllen}}}, flags={flags:#x}}}")


def _argv(log_size: int) -> Pre:
    def decode(task: "Task", args: tuple[int, ...], i: int) -> str:
        return _pointed(args[i], "vector", lambda: _argv_text(task, args[i], log_size))

    return decode


def _argv_text(task: "Task", addr: int, log_size: int) -> str:
    shown: list[str] = []
    budget = log_size
    while True:
        p = task.mm.read_u64(addr + 8 * len(shown))
        if p == 0:
            break
        if len(shown) == MAX_ARGV or budget <= 0:
            shown.append("...")
            break
        data, cut = _cstring(task, p, budget)
        budget -= len(data)
        shown.append(quote(data) + ("..." if cut else ""))
    return f"[{', '.join(shown)}]"


# ------------------------------------------------------------ plans

def _after(pre: Pre) -> Post:
    return lambda task, args, i, result: pre(task, args, i)


@dataclass(frozen=True)
class Plan:
    """How to show one system call's arguments: ``pre[i]`` on entry for
    every argument, ``post`` = (index, decoder) for those shown again on
    a successful exit, ``hide_on_exit`` = indexes replaced by ``...`` on
    exit (input buffers already shown on entry, as gVisor does)."""

    pre: tuple[Pre, ...]
    post: tuple[tuple[int, Post], ...]
    hide_on_exit: tuple[int, ...]


def pre_decoder(arg: Arg, log_size: int) -> Pre:
    """The entry decoder of one argument kind (hex for the ``after``
    kinds, whose memory holds nothing yet)."""
    if arg.after:
        return _hex
    k = arg.kind
    simple = {"int": _int, "uint": _uint, "size": _uint, "hex": _hex, "ptr": _hex, "oct": _oct, "mode": _mode,
              "fd": _fd, "signal": _signal}
    if k in simple:
        return simple[k]
    if k == "path":
        return _text(log_size, PATH_MAX)
    if k == "str":
        return _text(log_size)
    if k == "inbuf":
        return _inbuf(log_size)
    if k == "iniovec":
        return _iovec_contents(log_size)
    if k == "inmsghdr":
        return _msghdr_contents(log_size)
    if k == "flags":
        return _flags(arg.detail)
    if k == "enum":
        return _enum(arg.detail)
    if k == "openflags":
        return _named(names.open_flags)
    if k == "cloneflags":
        return _named(names.clone_flags, (1 << 64) - 1)
    if k == "futexop":
        return _named(names.futex_op)
    if k == "argv":
        return _argv(log_size)
    if k == "struct":
        return _struct_decoder(arg.detail)
    return _hex


def post_decoder(arg: Arg, log_size: int) -> Post:
    """The exit decoder of an ``after`` argument kind."""
    if arg.kind == "outbuf":
        return _outbuf(log_size)
    if arg.kind == "outiovec":
        return _iovec_contents(log_size)
    if arg.kind == "outmsghdr":
        return _msghdr_contents(log_size)
    if arg.kind == "struct":
        return _after(_struct_decoder(arg.detail, filled=True))
    return _after(pre_decoder(Arg(arg.kind, False, arg.detail), log_size))


_SHOWN_ON_ENTRY = ("inbuf", "iniovec", "inmsghdr")  # data the call takes: "..." on the exit line


def plan(entry: Syscall, log_size: int) -> Plan:
    pre = tuple(pre_decoder(a, log_size) for a in entry.args)
    post = tuple((i, post_decoder(a, log_size)) for i, a in enumerate(entry.args) if a.after)
    hide = tuple(i for i, a in enumerate(entry.args) if a.kind in _SHOWN_ON_ENTRY)
    return Plan(pre, post, hide)


def result_text(result: int, duration_ns: int) -> str:
    """What follows ``=`` on an exit line: ``3 (0x3) (45.1µs)``, or
    ``-2 (0xfffffffffffffffe) errno=2 (ENOENT) (12µs)``."""
    raw = result & ((1 << 64) - 1)
    if -4096 < result < 0:
        return f"{result} ({raw:#x}) errno={-result} ({names.errno_name(-result)}) ({go_duration(duration_ns)})"
    return f"{s64(raw)} ({raw:#x}) ({go_duration(duration_ns)})"
