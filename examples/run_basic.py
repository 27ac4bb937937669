"""Run programs in a sandbox from a script: capture, stdin, streaming.

    python3 examples/run_basic.py [PLATFORM]
"""
import sys

from sentry.api import PIPE, Sandbox

box = Sandbox(platform=sys.argv[1] if len(sys.argv) > 1 else "ptrace", env={"PATH": "/usr/bin:/bin"})

# One call: run to the end, stdout and stderr captured.
r = box.run(["/bin/sh", "-c", "echo hello from $(uname -s); tr a-z A-Z"], stdin=b"shout\n", timeout=30)
print(r.exit_status, r.stdout)  # 0 b'hello from Linux\nSHOUT\n'

# Streaming: talk to a running program through pipes.
with box.start(["/bin/sh", "-c", "while read x; do echo $((x * 2)); done"], stdin=PIPE, stdout=PIPE) as p:
    for n in (1, 2, 3):
        p.stdin.write(b"%d\n" % n)
        print(p.stdout.readline().strip())  # b'2', b'4', b'6'
    p.stdin.close()
    print("exit", p.wait())  # exit 0
