"""Native code: freestanding stub programs (``bin/``) and the cffi helper
extension ``stub._native`` (``native/``). Only ``platforms.*`` import this."""
import pathlib

_BIN = pathlib.Path(__file__).resolve().parent / "bin"


def binary(name: str) -> str:
    """Path of the stub program ``name``; FileNotFoundError if not built."""
    path = _BIN / name
    if not path.exists():
        raise FileNotFoundError(f"stub program {name!r} is not built ({path}); reinstall the package")
    return str(path)
