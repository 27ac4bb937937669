"""Program loading: ELF (static, static-pie, PT_INTERP), ``#!`` scripts,
and the initial stack (argv, envp, auxv) as Linux lays it out.

The caller supplies ``open_exec(path) -> (file, abs_path)`` (the VFS's
resolution inside the sandbox), a fresh MemoryManager and a Random.
Errors are ``ExecError`` with the errno execve(2) would return and a one-
line message for the user.
"""
from __future__ import annotations

import errno
import random
import struct
from dataclasses import dataclass
from typing import Callable

from loader import elf
from platforms.base import PROT_EXEC, PROT_READ, PROT_WRITE
from sentry.errors import ExecError, SyscallError
from sentry.kernel.cputime import CLK_TCK
from sentry.mm.mm import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MemoryManager, page_down, page_up

PAGE = 4096
STACK_SIZE = 8 << 20
ELF_ET_DYN_BASE = 0x5555_5555_4000 & ~0xFFFF
MAX_SCRIPT_DEPTH = 4
MAX_ARG_STRLEN = 32 * PAGE
MAX_ARGS_BYTES = 2 << 20

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 23, 25, 26, 31, 51
HWCAP2_FSGSBASE = 2  # not offered: wrfsbase faults on kvm, and fs_base is the Sentry's to set


def _host_auxv() -> dict[int, int]:
    with open("/proc/self/auxv", "rb") as f:
        raw = f.read()
    return dict(struct.iter_unpack("<QQ", raw[: len(raw) // 16 * 16]))


_HOST_AUXV = _host_auxv()


@dataclass
class Image:
    """A loaded program: where to start and what it is."""

    entry: int
    stack_pointer: int
    exe_path: str  # absolute sandbox path of the ELF that was loaded
    argv: list[bytes]


def _prot(flags: int) -> int:
    return (PROT_READ if flags & elf.PF_R else 0) | (PROT_WRITE if flags & elf.PF_W else 0) | \
        (PROT_EXEC if flags & elf.PF_X else 0)


def _read_header(file) -> bytes:
    return file.pread(256, 0)


def _parse(file, path: str) -> elf.ElfImage:
    try:
        size = file.size()
        return elf.parse(_read_header(file), file.pread, size)
    except elf.ElfError as e:
        raise ExecError(errno.ENOEXEC, f"{path}: cannot execute: {e}") from None


def _map_image(mm: MemoryManager, image: elf.ElfImage, file, path: str, bias: int) -> None:
    for seg in image.loads:
        if seg.memsz == 0:
            continue
        prot = _prot(seg.flags)
        start = page_down(seg.vaddr) + bias
        file_end = seg.vaddr + seg.filesz + bias
        mem_end = page_up(seg.vaddr + seg.memsz) + bias
        if seg.filesz:
            has_bss = seg.memsz > seg.filesz
            # A segment whose last file page we must zero-fill is mapped
            # writable first, so it gets a private copy, never cached pages.
            map_prot = prot | PROT_WRITE if has_bss else prot
            mm.mmap(start, page_up(file_end) - start, map_prot, MAP_PRIVATE | MAP_FIXED,
                    file, page_down(seg.offset), name=path)
            if has_bss and file_end & (PAGE - 1):
                mm.poke(file_end, bytes(page_up(file_end) - file_end))
            if map_prot != prot:
                mm.mprotect(start, page_up(file_end) - start, prot)
            anon_start = page_up(file_end)
        else:
            anon_start = start
        if mem_end > anon_start:
            mm.mmap(anon_start, mem_end - anon_start, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)


def _load_elf(mm: MemoryManager, image: elf.ElfImage, file, path: str, bias: int) -> None:
    try:
        _map_image(mm, image, file, path, bias)
    except SyscallError as e:
        raise ExecError(e.errno, f"{path}: cannot map program: {e}") from None


def _script(header: bytes, path: str, argv: list[bytes]) -> tuple[bytes, list[bytes]]:
    line = header[2:].split(b"\n", 1)[0] if b"\n" in header[2:] else None
    if line is None:
        raise ExecError(errno.ENOEXEC, f"{path}: #! line too long")
    parts = line.strip(b" \t").split(None, 1)
    if not parts:
        raise ExecError(errno.ENOEXEC, f"{path}: empty #! line")
    interp = parts[0]
    new_argv = [interp] + ([parts[1].strip(b" \t")] if len(parts) > 1 else []) + [path.encode()] + argv[1:]
    return interp, new_argv


def load(mm: MemoryManager, open_exec: Callable[[bytes], tuple[object, str]], path: bytes,
         argv: list[bytes], envp: list[bytes], rng: random.Random, creds) -> Image:
    """Load ``path`` into the empty ``mm`` and build its stack."""
    execfn = path
    for _ in range(MAX_SCRIPT_DEPTH + 1):
        file, abs_path = _open(open_exec, path)
        header = _read_header(file)
        if header[:2] == b"#!":
            path, argv = _script(header, abs_path, argv)
            continue
        break
    else:
        raise ExecError(errno.ELOOP, f"{execfn.decode(errors='replace')}: too many levels of #! interpreters")
    image = _parse(file, abs_path)
    if sum(len(a) + 1 for a in argv + envp) > MAX_ARGS_BYTES or any(len(a) >= MAX_ARG_STRLEN for a in argv + envp):
        raise ExecError(errno.E2BIG, f"{abs_path}: argument list too long")

    # Stack first, then the mmap area below it, as Linux lays them out.
    stack_top = page_down(mm.max_address - rng.randrange(0, 1 << 28) * 16) - PAGE
    stack_bottom = stack_top - STACK_SIZE
    mm.mmap(stack_bottom, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            name="[stack]")
    mm.stack_top = stack_top
    mm.mmap_base = page_down(stack_bottom - (128 << 20) - rng.randrange(0, 1 << 28) * PAGE)

    lo, hi = image.span()
    if image.type == elf.ET_DYN:
        bias = ELF_ET_DYN_BASE + rng.randrange(0, 1 << 22) * PAGE - lo
    else:
        bias = 0
    _load_elf(mm, image, file, abs_path, bias)
    brk = page_up(hi + bias) + rng.randrange(0, 1 << 13) * PAGE
    mm.brk_start = mm.brk = brk

    interp_base = 0
    entry = image.entry + bias
    if image.interp is not None:
        ifile, ipath = _open(open_exec, image.interp, bad_interpreter=abs_path)
        iimage = _parse(ifile, ipath)
        if iimage.interp is not None:
            raise ExecError(errno.ELIBBAD, f"{ipath}: interpreter has its own interpreter")
        ilo, ihi = iimage.span()
        try:
            interp_base = mm.find_free(ihi - ilo) - ilo if iimage.type == elf.ET_DYN else 0
        except SyscallError:
            raise ExecError(errno.ENOMEM, f"{ipath}: no room for the interpreter") from None
        _load_elf(mm, iimage, ifile, ipath, interp_base)
        entry = iimage.entry + interp_base

    phdr = _phdr_address(image, bias)
    auxv = [
        (AT_PHDR, phdr), (AT_PHENT, 56), (AT_PHNUM, image.phnum), (AT_PAGESZ, PAGE),
        (AT_BASE, interp_base), (AT_FLAGS, 0), (AT_ENTRY, image.entry + bias),
        (AT_UID, creds.uid), (AT_EUID, creds.euid), (AT_GID, creds.gid), (AT_EGID, creds.egid),
        (AT_SECURE, 0), (AT_HWCAP, _HOST_AUXV.get(AT_HWCAP, 0)), (AT_HWCAP2, _HOST_AUXV.get(AT_HWCAP2, 0) & ~HWCAP2_FSGSBASE),
        (AT_CLKTCK, CLK_TCK), (AT_MINSIGSTKSZ, _HOST_AUXV.get(AT_MINSIGSTKSZ, 2048)),
    ]
    sp = _build_stack(mm, stack_top, argv, envp, auxv, execfn, rng)
    return Image(entry, sp, abs_path, argv)


def _open(open_exec, path: bytes, bad_interpreter: str | None = None):
    try:
        return open_exec(path)
    except SyscallError as e:
        name = path.decode(errors="replace")
        if bad_interpreter is not None:
            raise ExecError(e.errno, f"{bad_interpreter}: bad interpreter {name}: {e}") from None
        raise ExecError(e.errno, f"{name}: {_errno_text(e.errno)}") from None


def _errno_text(err: int) -> str:
    import os

    return os.strerror(err)


def _phdr_address(image: elf.ElfImage, bias: int) -> int:
    for seg in image.segments:
        if seg.type == elf.PT_PHDR:
            return seg.vaddr + bias
    for seg in image.loads:
        if seg.offset <= image.phoff < seg.offset + seg.filesz:
            return seg.vaddr + (image.phoff - seg.offset) + bias
    return 0


def _build_stack(mm: MemoryManager, top: int, argv: list[bytes], envp: list[bytes],
                 auxv: list[tuple[int, int]], execfn: bytes, rng: random.Random) -> int:
    """Lay out, from the top down: execfn, envp and argv strings, the
    platform string, 16 random bytes, then (16-byte aligned) argc, argv[],
    NULL, envp[], NULL, auxv pairs, AT_NULL. Returns the new rsp."""
    blob = bytearray()
    pos = top

    def push(data: bytes) -> int:
        nonlocal pos
        pos -= len(data)
        blob[0:0] = data
        return pos

    push(b"\0" * 8)
    execfn_addr = push(execfn + b"\0")
    env_addrs = [push(e + b"\0") for e in reversed(envp)][::-1]
    env_end = top - 8 - len(execfn) - 1
    arg_addrs = [push(a + b"\0") for a in reversed(argv)][::-1]
    platform_addr = push(b"x86_64\0")
    random_addr = push(rng.randbytes(16))
    mm.arg_start = arg_addrs[0] if arg_addrs else platform_addr
    mm.arg_end = (env_addrs[0] if env_addrs else env_end)
    mm.env_start = env_addrs[0] if env_addrs else env_end
    mm.env_end = env_end
    auxv = auxv + [(AT_RANDOM, random_addr), (AT_PLATFORM, platform_addr), (AT_EXECFN, execfn_addr), (AT_NULL, 0)]
    words = [len(argv), *arg_addrs, 0, *env_addrs, 0]
    for key, value in auxv:
        words += [key, value]
    table = struct.pack(f"<{len(words)}Q", *words)
    sp = (pos - len(table)) & ~15
    try:
        mm.copy_out(pos, bytes(blob))
        mm.copy_out(sp, table)
    except SyscallError:
        raise ExecError(errno.E2BIG, "argument list too long for the stack") from None
    return sp
