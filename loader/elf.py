"""ELF64 header validation and parsing (x86-64 executables only).

Every check runs before the arithmetic it protects; a file that fails one
raises ``ElfError`` with a one-line reason, which the exec path turns into
ENOEXEC."""
from __future__ import annotations

import struct
from dataclasses import dataclass

PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551
ET_EXEC, ET_DYN = 2, 3
PF_X, PF_W, PF_R = 1, 2, 4
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
MAX_PHNUM = 512
MAX_SPAN = 1 << 40


class ElfError(Exception):
    """Not a loadable x86-64 ELF executable; str(e) says why."""


@dataclass(frozen=True)
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


@dataclass(frozen=True)
class ElfImage:
    type: int
    entry: int
    phoff: int
    phnum: int
    segments: tuple[Segment, ...]
    interp: bytes | None  # PT_INTERP path, without the NUL

    @property
    def loads(self) -> list[Segment]:
        return [s for s in self.segments if s.type == PT_LOAD]

    def span(self) -> tuple[int, int]:
        """Page-aligned [lo, hi) covered by the PT_LOAD segments."""
        lo = min(s.vaddr for s in self.loads) & ~0xFFF
        hi = max(s.vaddr + s.memsz for s in self.loads)
        return lo, (hi + 0xFFF) & ~0xFFF


def parse(header: bytes, read_at, file_size: int) -> ElfImage:
    """Parse the ELF header in ``header`` (the file's first bytes);
    ``read_at(length, offset) -> bytes`` reads the rest of the file."""
    if len(header) < 4 or header[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    if len(header) < _EHDR.size:
        raise ElfError("truncated ELF header")
    (ident, etype, machine, version, entry, phoff, _shoff, _flags, ehsize, phentsize, phnum,
     *_rest) = _EHDR.unpack_from(header)
    if ident[4] != 2:
        raise ElfError("not a 64-bit ELF file (wrong architecture)")
    if ident[5] != 1:
        raise ElfError("not a little-endian ELF file")
    if machine != 62:
        raise ElfError(f"ELF machine {machine} is not x86-64 (wrong architecture)")
    if etype not in (ET_EXEC, ET_DYN):
        raise ElfError(f"ELF type {etype} is not an executable")
    if version != 1 or ident[6] != 1:
        raise ElfError("unknown ELF version")
    if phentsize != _PHDR.size:
        raise ElfError(f"bad program header size {phentsize}")
    if not 0 < phnum <= MAX_PHNUM:
        raise ElfError(f"bad program header count {phnum}")
    if phoff > file_size or phoff + phnum * phentsize > file_size:
        raise ElfError("program headers lie outside the file")
    table = read_at(phnum * phentsize, phoff)
    if len(table) != phnum * phentsize:
        raise ElfError("truncated program headers")
    segments = []
    interp = None
    for i in range(phnum):
        ptype, flags, off, vaddr, _paddr, filesz, memsz, align = _PHDR.unpack_from(table, i * phentsize)
        seg = Segment(ptype, flags, off, vaddr, filesz, memsz, align)
        if ptype == PT_LOAD:
            if filesz > memsz:
                raise ElfError(f"segment {i}: file size exceeds memory size")
            if off + filesz > file_size or off + filesz < off:
                raise ElfError(f"segment {i} lies outside the file")
            if vaddr + memsz >= MAX_SPAN or (vaddr - off) & 0xFFF:
                raise ElfError(f"segment {i}: bad address {vaddr:#x}")
        elif ptype == PT_INTERP:
            if interp is not None:
                raise ElfError("more than one PT_INTERP")
            if not 1 < filesz <= 4096 or off + filesz > file_size:
                raise ElfError("bad PT_INTERP")
            raw = read_at(filesz, off)
            if len(raw) != filesz or raw[-1:] != b"\0" or b"\0" in raw[:-1]:
                raise ElfError("bad PT_INTERP path")
            interp = raw[:-1]
        segments.append(seg)
    loads = [s for s in segments if s.type == PT_LOAD]
    if not loads:
        raise ElfError("no loadable segments")
    ordered = sorted(loads, key=lambda s: s.vaddr)
    for a, b in zip(ordered, ordered[1:]):
        if a.vaddr + a.memsz > b.vaddr:
            raise ElfError("overlapping segments")
    return ElfImage(etype, entry, phoff, phnum, tuple(segments), interp)
