"""Shim for cffi_modules and the stub binaries; metadata is in pyproject.toml."""
import os
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildWithStubs(build_ext):
    """Also build the freestanding stub programs (stub/Makefile) into the
    package, so ``stub.binary(name)`` finds them after any kind of install."""

    def run(self):
        out = os.path.abspath(os.path.join("." if self.inplace else self.build_lib, "stub", "bin"))
        subprocess.check_call(["make", "-C", "stub", f"OUT={out}"])
        super().run()


setup(cffi_modules=["stub/build_native.py:ffibuilder"], cmdclass={"build_ext": BuildWithStubs})
