"""The built package holds everything the source tree has: a wheel built
from the tracked files contains every module and data file, and the
`sentry` it installs runs a program from outside the source tree (an
editable install, which the other tests use, would hide a module left out
of the package list)."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE_ROOTS = ("abi", "sentry", "platforms", "loader", "stub")


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return [p for p in out if (ROOT / p).is_file()]


def test_wheel_holds_every_module_and_runs_outside_the_tree(tmp_path):
    src = tmp_path / "src"
    for rel in _tracked():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((ROOT / rel).read_bytes())
        dest.chmod((ROOT / rel).stat().st_mode)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p for p in _tracked() if p.split("/")[0] in PACKAGE_ROOTS
              and (p.endswith((".py", ".json")) or p.startswith("sentry/bench/progs/"))}
    assert wanted - names == set()
    assert {"stub/bin/stub-ptrace", "stub/bin/stub-vmexec", "stub/bin/ring0.bin"} <= names
    assert any(n.startswith("stub/_native") and n.endswith(".so") for n in names)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    for n in names:  # zipfile drops the mode bits: the stubs must be executable
        if n.startswith("stub/bin/stub-"):
            (site / n).chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "LANG": "C.UTF-8"}
    run = subprocess.run([sys.executable, "-c", "import sentry.__main__ as m, sys; sys.argv[0] = 'sentry'; m.main()",
                          "run", "--", "/bin/echo", "from the wheel"], cwd=tmp_path, env=env,
                         capture_output=True, timeout=120)
    assert (run.returncode, run.stdout, run.stderr) == (0, b"from the wheel\n", b"")
    listing = subprocess.run([sys.executable, "-c", "import sentry.__main__ as m, sys; m.main()", "syscalls"],
                             cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert listing.returncode == 0 and b"supported" in listing.stdout
