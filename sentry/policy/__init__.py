"""System-call policy hooks: Python callables that see (and may veto or
rewrite) what a sandboxed program asks of the Sentry.

In a nutshell: a ``Policy`` is a registry of hooks. ``policy.syscall(...)``
registers a hook on system calls by name or number (or on all of them),
run before the handler; ``policy.after(...)`` one run after it, seeing the
result. ``policy.event("exec" | "clone" | "exit")`` registers a hook on
process events, ``policy.file_open`` one on every open(2)/openat(2)/creat(2).
Hooks get a read-only view (``Call``, ``ProcessEvent``, ``FileOpen``: task
ids, raw and decoded arguments, the path resolved inside the sandbox) and
return a decision: ``None`` (no objection), ``Deny(errno)``, ``Kill(signo)``
or ``Return(value, writes)`` (substitute the result, optionally writing
bytes into the guest's memory). The first decision that is not None wins,
in registration order. Policies compose: ``compose(a, b)`` (or ``a + b``)
holds the hooks of both.

Cost: when a sandbox starts, ``Policy.table`` builds a dispatch list in
which only the hooked entries are replaced by wrappers (the others are the
very same objects), so a call without a hook runs exactly the code it runs
without any policy. The run loop tests ``kernel.policy is None`` once per
task, not per call.

Hooks run on the calling task's OS thread, before or after the handler;
they must not block for long (the task is stopped meanwhile) and must be
thread-safe (tasks run in parallel). An exception from a hook (other than
returning a decision) ends the sandbox with a ``PolicyError`` naming it.

Path checks are made on the path resolved by the hook view; a guest that
races a symlink swap between the check and the handler's own resolution
can make the two differ (as with any path-based seccomp supervisor).

Ready policies (``sentry.policy.ready``): ``read_only``, ``no_network``,
``exec_allowlist``, ``WriteLog``. ``load_policy_file`` loads the module
``sentry run --policy FILE.py`` names (it must define ``policy``).
"""
from sentry.policy.core import (ALLOW, Deny, Kill, Policy, PolicyError, Return, compose,
                                load_policy_file)
from sentry.policy.ready import WriteLog, WriteRecord, exec_allowlist, no_network, read_only
from sentry.policy.view import Call, FileOpen, ProcessEvent

__all__ = ["ALLOW", "Call", "Deny", "FileOpen", "Kill", "Policy", "PolicyError", "ProcessEvent", "Return",
           "WriteLog", "WriteRecord", "compose", "exec_allowlist", "load_policy_file", "no_network", "read_only"]
