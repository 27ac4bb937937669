"""Tripwires between C and Python: the shared struct layouts agree."""
from __future__ import annotations

import subprocess

from stub._native import ffi

from platforms.native_regs import REG_NAMES


def test_user_regs_struct_matches_sys_user_h(tmp_path):
    src = tmp_path / "layout.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <sys/user.h>\nint main(void){\n"
                   + "".join(f'printf("{n} %zu\\n", offsetof(struct user_regs_struct, {n}));\n' for n in REG_NAMES)
                   + 'printf("size %zu\\n", sizeof(struct user_regs_struct));\n}\n')
    subprocess.run(["gcc", "-o", str(tmp_path / "layout"), str(src)], check=True)
    out = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True, check=True).stdout
    c_layout = dict(line.split() for line in out.splitlines())
    for name in REG_NAMES:
        assert ffi.offsetof("struct user_regs_struct", name) == int(c_layout[name]), name
    assert ffi.sizeof("struct user_regs_struct") == int(c_layout["size"])
