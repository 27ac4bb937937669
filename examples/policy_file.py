"""A policy module for `sentry run --policy examples/policy_file.py -- PROG`:
no program may read /etc/shadow or /etc/passwd, the machine is called
"sandbox", and every file written is logged on stderr.

    sentry run --policy examples/policy_file.py -- /bin/sh -c 'cat /etc/passwd; uname -n; echo x > /tmp/f'
"""
import errno
import sys

from sentry.policy import Deny, Policy, Return, WriteLog, compose

SECRETS = {"/etc/shadow", "/etc/passwd"}
rules = Policy("secrets")


@rules.file_open
def no_secrets(op):
    # op.path is resolved inside the sandbox: ../etc/passwd or a symlink to it is caught too
    return Deny(errno.EACCES) if op.path in SECRETS else None


@rules.after("uname")
def hostname(call):
    nodename = call.args[0] + 65  # struct utsname: six 65-byte fields; the 2nd is the node name
    return Return(call.result, writes=[(nodename, b"sandbox\0")])


policy = compose(rules, WriteLog(file=sys.stderr))
