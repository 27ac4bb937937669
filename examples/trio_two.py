"""Two sandboxes at once from a trio program.

    python3 examples/trio_two.py [PLATFORM]
"""
import sys

import trio

from sentry.api import Sandbox

box = Sandbox(platform=sys.argv[1] if len(sys.argv) > 1 else "ptrace")


async def main() -> None:
    results = {}

    async def one(name: str, script: str) -> None:
        results[name] = await box.run_async(["/bin/sh", "-c", script], timeout=60)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "count", "ls /usr/bin | wc -l")
        nursery.start_soon(one, "kernel", "uname -sr")
    for name, r in sorted(results.items()):
        print(name, r.exit_status, r.stdout.decode().strip())


trio.run(main)
