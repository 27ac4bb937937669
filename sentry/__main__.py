"""Entry point of the `sentry` command (and `python -m sentry`)."""
import sys


def main() -> None:
    from sentry.fs.stdio import plug_closed_stdio

    plug_closed_stdio()
    from sentry.cli import main as cli_main

    status = cli_main()
    # Leave without tearing the interpreter down module by module (~20 ms
    # here, a fifth of a short run): the sandbox is closed by now, every
    # stub reaped. Exit handlers still run and the standard streams are
    # flushed first.
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the fd was closed when Python started
                stream.flush()
        except (OSError, ValueError):
            if status == 0:
                status = 120  # as Python does when stdout cannot be flushed at exit
    os._exit(status)


if __name__ == "__main__":
    main()
