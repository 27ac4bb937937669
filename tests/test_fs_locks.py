"""LockTable: ranges, owners, splitting, waking waiters."""
from __future__ import annotations

import errno

import pytest

from sentry.errors import SyscallError
from sentry.fs.locks import F_RDLCK, F_UNLCK, F_WRLCK, LockTable


def test_ranges_conflict_only_between_owners():
    t, a, b = LockTable(), object(), object()
    t.set(a, F_WRLCK, 0, 10, 1)
    t.set(a, F_RDLCK, 5, 8, 1)  # own locks never conflict: the range is converted
    assert t.conflict(b, F_RDLCK, 0, 5).type == F_WRLCK
    assert t.conflict(b, F_RDLCK, 5, 8) is None  # read over read
    assert t.conflict(b, F_WRLCK, 5, 8).type == F_RDLCK
    assert t.conflict(b, F_WRLCK, 10, None) is None
    with pytest.raises(SyscallError) as e:
        t.set(b, F_WRLCK, 9, 12, 2)
    assert e.value.errno == errno.EAGAIN
    assert sorted((lk.start, lk.end, lk.type) for lk in t.ranges) == [(0, 5, F_WRLCK), (5, 8, F_RDLCK),
                                                                      (8, 10, F_WRLCK)]


def test_unlock_splits_and_forget_wakes():
    t, a, b = LockTable(), object(), object()
    t.set(a, F_WRLCK, 0, None, 1)
    t.set(a, F_UNLCK, 100, 200, 1)
    assert [(lk.start, lk.end) for lk in sorted(t.ranges, key=lambda lk: lk.start)] == [(0, 100), (200, None)]
    assert t.conflict(b, F_WRLCK, 150, 160) is None
    woken = []
    t.subscribe(lambda: woken.append(1))
    t.forget(b)  # nothing of b's: nobody is told
    assert woken == []
    t.forget(a)
    assert woken == [1] and t.ranges == []


def test_flock_is_a_separate_namespace():
    t, a, b = LockTable(), object(), object()
    t.set(a, F_WRLCK, 0, None, 1, flock=True)
    t.set(b, F_WRLCK, 0, None, 2)  # a POSIX lock does not see flock locks
    assert t.conflict(b, F_RDLCK, 0, None, flock=True) is not None
