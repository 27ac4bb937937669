"""Signals as Linux queues and frames them, on every platform, against the
same program run natively: real-time signals queued per instance
(sigtimedwait, handlers, signalfd, sigpending, pthread_sigqueue and its
permission rule, RLIMIT_SIGPENDING); the trapno, error code and cr2 of a
fault's frame; a bad rt_sigreturn frame forcing SIGSEGV."""
from __future__ import annotations

import pytest

from conftest import native


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_realtime_signals_queue(sentry, cprog, mode):
    sentry.matches_native(cprog("sig_rtqueue", mode))


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_fault_frames(sentry, cprog, mode):
    """Page faults: trapno 14, the #PF error code, cr2; #UD, #BP, #GP, #DE
    by their vectors; a later signal's frame keeps the last fault's."""
    sentry.matches_native(cprog("sig_faultregs", mode))


def test_fault_frames_of_writes_to_absent_pages(sentry, cprog):
    """A write to a page that is not there: only the platforms that see
    the #PF error code know it was a write (ptrace reports no access type:
    the Sentry takes it for a read, see sentry.kernel.run._page_fault)."""
    if sentry.platform == "ptrace":
        pytest.skip("ptrace: no access type for faults on absent pages")
    sentry.matches_native(cprog("sig_faultregs"), "full")


@pytest.mark.parametrize("case, status", [("unmapped", 139), ("handler", 3), ("mxcsr", 139), ("xcomp", 139),
                                          ("xfeature", 139), ("magic", 0)])
def test_bad_sigreturn_frame_forces_sigsegv(sentry, cprog, case, status):
    """Linux's badframe: SIGSEGV (SI_KERNEL) at the rt_sigreturn, never an
    error returned; an XSAVE area XRSTOR refuses is a bad frame (never a
    Sentry crash); one without the xstate magic restores the legacy area."""
    prog = cprog("sig_badframe")
    want = native(prog, case)
    assert want.returncode == (-11 if status == 139 else status), want
    got = sentry.run(prog, case)
    assert (got.returncode, got.stdout) == (status, want.stdout), got.stderr


def test_interrupted_waits_keep_their_time(sentry, cprog):
    """A stop and continue resumes nanosleep, clock_nanosleep and poll
    through restart_syscall with their deadline; ppoll and select write
    back the time left (also on success) and restart with it; after a
    handler restart_syscall is EINTR."""
    sentry.matches_native(cprog("sig_restart_time"))
