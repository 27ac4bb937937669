"""Ready policies composed: read-only files, no network, and only a shell
and echo may run.

    python3 examples/policy_compose.py [PLATFORM]
"""
import sys

from sentry.api import Sandbox
from sentry.policy import exec_allowlist, no_network, read_only

policy = read_only() + no_network() + exec_allowlist(["/bin/sh", "/bin/echo"])
box = Sandbox(platform=sys.argv[1] if len(sys.argv) > 1 else "ptrace", policy=policy)
r = box.run(["/bin/sh", "-c", "echo hi > /tmp/f; /bin/ls /; /bin/echo still here"])
print(r.stdout)  # b'still here\n'
print(r.stderr.decode())  # Read-only file system; /bin/ls: Permission denied
