"""The README's "Python API" code blocks and the scripts in examples/ run
as written (on every platform: the blocks' platform="ptrace" is swapped)."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Python API"):]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_blocks(platform, capsys):
    blocks = readme_blocks()
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block.replace('platform="ptrace"', f'platform="{platform}"'), "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert re.search(r"^exec 1 /\S+ \('/bin/sh', '-c'", out, re.M), out  # the exec hook's print


def _example(name: str, platform: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), platform], capture_output=True,
                          timeout=180, cwd=ROOT)


def test_examples(platform):
    p = _example("run_basic.py", platform)
    assert p.stdout.decode().splitlines() == ["0 b'hello from Linux\\nSHOUT\\n'", "b'2'", "b'4'", "b'6'", "exit 0"], p
    p = _example("trio_two.py", platform)
    assert p.returncode == 0 and p.stdout.startswith(b"count 0 ") and b"\nkernel 0 Linux" in p.stdout, p
    p = _example("policy_compose.py", platform)
    assert p.stdout.startswith(b"b'still here\\n'\n"), p
    assert b"Read-only file system" in p.stdout and b"/bin/ls: Permission denied" in p.stdout


def test_policy_file_example(platform):
    cmd = [sys.executable, "-m", "sentry", "run", "--platform", platform, "--policy",
           str(ROOT / "examples" / "policy_file.py"), "--", "/bin/sh", "-c", "cat /etc/passwd; uname -n; echo x > /tmp/f"]
    p = subprocess.run(cmd, capture_output=True, timeout=180)
    assert p.stdout == b"sandbox\n", p
    assert b"Permission denied" in p.stderr and b"\topen\t/tmp/f\n" in p.stderr
