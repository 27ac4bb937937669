"""File-system structs of the x86-64 Linux ABI, packed with ``struct``.

Layouts (checked against what C sees by tests/test_fs_structs.py, which
compiles a tiny program printing sizeof/offsetof):

- ``struct stat`` (144 bytes, <asm/stat.h> x86-64 flavour),
- ``struct statx`` (256 bytes, <linux/stat.h>),
- ``struct statfs`` (120 bytes),
- ``struct linux_dirent64`` (19-byte header + name + NUL, padded to 8),
- ``struct flock`` (32 bytes), ``struct timespec`` (16 bytes).

``pack_stat``/``pack_statx`` take any object with the attributes of
``os.stat_result`` (st_dev, st_ino, st_mode, st_nlink, st_uid, st_gid,
st_rdev, st_size, st_blksize, st_blocks, st_atime_ns, st_mtime_ns,
st_ctime_ns), so a host ``os.stat_result`` is packed without conversion.
"""
from __future__ import annotations

import struct

# struct stat: dev, ino, nlink, mode, uid, gid, pad, rdev, size, blksize,
# blocks, atime, atime_nsec, mtime, mtime_nsec, ctime, ctime_nsec, unused[3]
STAT = struct.Struct("<QQQIIIIQqqqqQqQqQ24x")  # seconds signed (time_t), as glibc reads them
STAT_OFFSETS = {"st_dev": 0, "st_ino": 8, "st_nlink": 16, "st_mode": 24, "st_uid": 28,
                "st_gid": 32, "st_rdev": 40, "st_size": 48, "st_blksize": 56, "st_blocks": 64,
                "st_atime": 72, "st_mtime": 88, "st_ctime": 104}

# struct statx: mask, blksize, attributes, nlink, uid, gid, mode, pad, ino,
# size, blocks, attributes_mask, 4 x statx_timestamp{sec, nsec, pad}
# (atime, btime, ctime, mtime), rdev major/minor, dev major/minor, mnt_id,
# dio_mem_align, dio_offset_align, spare[12].
STATX = struct.Struct("<IIQIIIH2xQQQQ" + "qI4x" * 4 + "IIIIQII96x")
STATX_OFFSETS = {"stx_mask": 0, "stx_blksize": 4, "stx_attributes": 8, "stx_nlink": 16,
                 "stx_uid": 20, "stx_gid": 24, "stx_mode": 28, "stx_ino": 32, "stx_size": 40,
                 "stx_blocks": 48, "stx_attributes_mask": 56, "stx_atime": 64, "stx_btime": 80,
                 "stx_ctime": 96, "stx_mtime": 112, "stx_rdev_major": 128, "stx_rdev_minor": 132,
                 "stx_dev_major": 136, "stx_dev_minor": 140, "stx_mnt_id": 144}
STATX_TYPE = 0x1
STATX_MODE = 0x2
STATX_NLINK = 0x4
STATX_UID = 0x8
STATX_GID = 0x10
STATX_ATIME = 0x20
STATX_MTIME = 0x40
STATX_CTIME = 0x80
STATX_INO = 0x100
STATX_SIZE = 0x200
STATX_BLOCKS = 0x400
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800
STATX_MNT_ID = 0x1000

# struct statfs: type, bsize, blocks, bfree, bavail, files, ffree, fsid[2],
# namelen, frsize, flags, spare[4]
STATFS = struct.Struct("<qqQQQQQiiqqq32x")
STATFS_OFFSETS = {"f_type": 0, "f_bsize": 8, "f_blocks": 16, "f_bfree": 24, "f_bavail": 32,
                  "f_files": 40, "f_ffree": 48, "f_fsid": 56, "f_namelen": 64, "f_frsize": 72,
                  "f_flags": 80}

# struct linux_dirent64 header: ino, off, reclen, type; name follows.
DIRENT64 = struct.Struct("<QqHB")
DIRENT64_OFFSETS = {"d_ino": 0, "d_off": 8, "d_reclen": 16, "d_type": 18, "d_name": 19}

# struct flock: type, whence, (pad), start, len, pid, (pad)
FLOCK = struct.Struct("<hh4xqqi4x")
TIMESPEC = struct.Struct("<qq")

# d_type values
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12

_NS = 1_000_000_000


def major(dev: int) -> int:
    return ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)


def minor(dev: int) -> int:
    return (dev & 0xFF) | ((dev >> 12) & ~0xFF)


def makedev(ma: int, mi: int) -> int:
    return ((ma & 0xFFF) << 8) | ((ma & ~0xFFF) << 32) | (mi & 0xFF) | ((mi & ~0xFF) << 12)


def pack_stat(st) -> bytes:
    a, m, c = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
    return STAT.pack(st.st_dev, st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid, 0,
                     st.st_rdev, st.st_size, st.st_blksize, st.st_blocks,
                     a // _NS, a % _NS, m // _NS, m % _NS, c // _NS, c % _NS)


def pack_statx(st, mnt_id: int = 1) -> bytes:
    a, m, c = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
    return STATX.pack(STATX_BASIC_STATS | STATX_MNT_ID, st.st_blksize, 0, st.st_nlink, st.st_uid,
                      st.st_gid, st.st_mode & 0xFFFF, st.st_ino, st.st_size, st.st_blocks, 0,
                      a // _NS, a % _NS, 0, 0, c // _NS, c % _NS, m // _NS, m % _NS,
                      major(st.st_rdev), minor(st.st_rdev), major(st.st_dev), minor(st.st_dev),
                      mnt_id, 0, 0)


def pack_statfs(f_type: int, bsize: int, blocks: int, bfree: int, bavail: int, files: int,
                ffree: int, namelen: int = 255, flags: int = 0) -> bytes:
    return STATFS.pack(f_type, bsize, blocks, bfree, bavail, files, ffree, 0, 0, namelen, bsize, flags)


def dirent64(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    """One linux_dirent64 record, NUL-terminated and padded to 8 bytes."""
    reclen = (DIRENT64.size + len(name) + 1 + 7) & ~7
    return DIRENT64.pack(ino, off, reclen, dtype) + name + b"\0" * (reclen - DIRENT64.size - len(name))
