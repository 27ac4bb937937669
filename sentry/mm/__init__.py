"""Guest memory: the MemoryFile and the address spaces carved from it.

- ``memfile.MemoryFile``: the one memfd per sandbox that holds every byte of
  guest memory; the Sentry maps it once and does all guest memory I/O
  through that mapping.
- ``mm.MemoryManager``: one guest address space — VMAs over MemoryFile
  ranges, mirrored eagerly into the platform ``AddressSpace``; copy-in/out
  with protection checks (a bad pointer is EFAULT); copy-on-write fork.
- ``pagecache.PageCache``: MemoryFile copies of file ranges shared by every
  private read-only mapping of the same range (``libc.so`` is read once per
  sandbox).
"""
