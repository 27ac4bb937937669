"""sentry.fs: the Sentry's file systems. The guest never touches a host file
system; every path it names is resolved here.

Layers, bottom up:

- ``hostroot``: the one door to the host: access confined below a host
  directory (the parent of every name opened with openat2 RESOLVE_IN_ROOT |
  RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, the name never followed);
  read-only for the rootfs, writable for volumes and ``--overlay DIR``.
- ``node``: ``Node`` (an inode: stat, lookup, readdir, readlink, open, and
  the directory mutations) and ``Stat`` (os.stat_result's attribute names).
- File systems: ``overlay`` (the host rootfs under an in-memory upper
  layer: copy-up, whiteouts, opaque new directories, FIFOs; with no host
  below it is a tmpfs; ``upperdir`` keeps its upper layer in a host
  directory across runs), ``hostfs`` (a volume passed through), ``proc``,
  ``sysfs`` and ``synth`` (computed
  files), ``dev`` (a tmpfs holding the Sentry's devices), ``pipe``.
- ``file``: ``OpenFile`` (an open file description: flags, offset,
  reference count) and its families; ``stdio``: host stdio passthrough;
  ``locks``: advisory locks (fcntl record/OFD locks, flock).
- ``vfs``: the mount table (rootfs, /proc, /sys, /dev, volumes), path
  resolution and path operations; ``context``: a task's root/cwd/umask;
  ``fdtable``: its descriptors.

Confinement: paths are walked one component at a time by ``VFS._walk``.
'..' at the sandbox root stays there; symlink targets are spliced into the
walk with absolute ones restarting at the *sandbox* root; at most 40 links;
/proc's magic links jump to Sentry nodes. A host path is only ever built
by the overlay from names it looked up itself (each lstat'ed, never
followed), and every host open goes through openat2 RESOLVE_IN_ROOT as
defence in depth. The rootfs is never written: with the memory overlay all
changes live in the Sentry; with ``overlay="none"`` they fail with EROFS;
with ``overlay=DIR`` they are saved to DIR at the end. Only writable
volumes and DIR are ever changed on the host.

Lock order (outermost first):
    FDTable.lock          (leaf: files are released after it is dropped)
    OpenFile.lock         (the offset)
      > OverlayFS.lock    (namespace changes, copy-up, file data)
    Pipe.lock, LockTable.lock, the stdio watcher's lock
                          (leaves; readiness callbacks run after them)
Lookups of cached names, reads of cached data and ``FDTable.get`` take no
lock (single dict reads under the GIL).
"""
