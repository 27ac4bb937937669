"""/sys, synthesized: only what libc and runtimes read (the CPU lists that
sysconf(_SC_NPROCESSORS_*) parses). The host's /sys is never shown."""
from __future__ import annotations

import os

from sentry.fs.synth import SYSFS_MAGIC, SynthDir, SynthFile, SynthFS


def cpu_list() -> bytes:
    """The CPUs the sandbox sees, as a sysfs range list ("0-1\\n"): the
    Sentry's own affinity, as sched_getaffinity(2) reports it."""
    n = len(os.sched_getaffinity(0))
    return (b"0-%d\n" % (n - 1)) if n > 1 else b"0\n"


def make_sysfs() -> SynthFS:
    fs = SynthFS("sysfs", SYSFS_MAGIC)
    cpus = cpu_list()
    const = lambda data: SynthFile(fs, lambda ctx: data)  # noqa: E731
    cpu = SynthDir(fs, {b"online": const(cpus), b"possible": const(cpus), b"present": const(cpus)})
    fs.root = SynthDir(fs, {b"devices": SynthDir(fs, {b"system": SynthDir(fs, {b"cpu": cpu})}),
                            b"fs": SynthDir(fs, {})})
    return fs
