"""cffi builder (API mode) for ``stub._native``: every native helper the
platforms call on the hot path, in one extension.

Each helper is a pair in ``stub/native/``: ``NAME.cdef`` (the declarations
Python sees, cffi syntax) and ``NAME.c`` (the implementation, which includes
``NAME.h``). Adding a helper means adding files, not editing this builder.
"""
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent / "native"

ffibuilder = FFI()
_names = sorted(p.stem for p in HERE.glob("*.cdef"))
for name in _names:
    ffibuilder.cdef((HERE / f"{name}.cdef").read_text())
ffibuilder.set_source(
    "stub._native",
    "".join(f'#include "{name}.h"\n' for name in _names),
    sources=[str(p.relative_to(HERE.parent.parent)) for p in sorted(HERE.glob("*.c"))],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
