"""Entry point of the `sentry` command (and `python -m sentry`)."""
import sys


def main() -> None:
    from sentry.cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
