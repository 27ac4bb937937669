"""What /proc says the sandbox is doing, on every platform: each task's
state (R running, S parked in a wait, T stopped, Z zombie) as ps and top
show it, the sandbox's own uptime, load and CPU time; and hard links of
the rootfs, which stay linked when the overlay copies one name up."""
from __future__ import annotations

import shutil
import time

import pytest

from conftest import native

BUSYBOX = shutil.which("busybox")

# settle PID STATE: wait (bounded) until /proc/PID/stat says STATE: a child
# takes a moment to park in its wait or to stop.
SETTLE = ("settle() { for i in $(seq 400); do read -r _ _ st _ < /proc/$1/stat; [ \"$st\" = \"$2\" ] && return 0; "
          "sleep 0.05; done; echo \"unsettled $1 $st\"; }\n")


def test_task_states_as_natively(sentry, cprog):
    """tests/progs/proc_states.c: a sleeper, a busy loop, a stopped child, a
    zombie and two threads print the states /proc shows for them."""
    prog = cprog("proc_states")
    want = native(prog)
    assert want.returncode == 0, want.stderr
    assert b"sleeping S\n" in want.stdout and b"zombie Z\n" in want.stdout
    got = sentry.run(prog)
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode() == want.stdout.decode()


def test_top_and_ps_show_sleeping_running_and_stopped(sentry):
    script = SETTLE + """
sleep 30 & s=$!
(while :; do :; done) & b=$!
sleep 30 & t=$!
kill -STOP $t
settle $s S; settle $b R; settle $t T
echo "$s $b $t"
ps -o pid=,stat= -p $s,$b,$t
echo ---
top -b -n1
kill -9 $s $b; kill -CONT $t; kill -9 $t
"""
    got = sentry.run("/bin/bash", "-c", script)
    assert got.returncode == 0, got.stderr
    head, top = got.stdout.decode().split("---\n")
    lines = head.splitlines()
    s, b, t = lines[0].split()
    ps = dict(line.split() for line in lines[1:])
    assert {pid: stat[0] for pid, stat in ps.items()} == {s: "S", b: "R", t: "T"}, got.stdout
    # bash waits for top (S), the sleeper (S), the loop and top (R), the stopped job (T)
    assert "Tasks:   5 total,   2 running,   2 sleeping,   1 stopped,   0 zombie" in top, top
    rows = {r[0]: r[7] for r in (line.split() for line in top.splitlines()) if len(r) > 11 and r[0].isdigit()}
    assert (rows[s], rows[b], rows[t], rows["1"]) == ("S", "R", "T", "S"), top
    assert " up 0 min," in top, top  # the sandbox's uptime, not the host's


def test_uptime_counts_from_the_sandboxs_start(sentry):
    got = sentry.run("/bin/cat", "/proc/uptime")
    assert got.returncode == 0, got.stderr
    up, idle = map(float, got.stdout.split())
    assert 0 < up < 2 and 0 <= idle
    # ps's elapsed times and start times agree with it: btime + uptime is now
    got = sentry.run("/bin/bash", "-c", "sleep 1; cat /proc/uptime; grep btime /proc/stat; ps -o etimes= -p 1")
    assert got.returncode == 0, got.stderr
    lines = got.stdout.decode().splitlines()
    up = float(lines[0].split()[0])
    assert 1 <= up < 4
    assert abs(int(lines[1].split()[1]) + up - time.time()) < 3
    assert 1 <= int(lines[2]) <= up + 1


def test_cpu_ticks_and_load_are_the_sandboxs(sentry):
    """/proc/stat's user ticks grow after a busy loop; /proc/loadavg counts
    the running and all tasks and gives the last PID."""
    script = SETTLE + """
read -r _ u0 _ < /proc/stat
for ((i = 0; i < 200000; i++)); do :; done
read -r _ u1 _ < /proc/stat
read -r -a me < /proc/$$/stat
echo "$u0 $u1 ${me[13]}"
grep -E '^(processes|procs_running|procs_blocked) ' /proc/stat
sleep 30 & s=$!
settle $s S
(echo $BASHPID; exec cat /proc/loadavg)
kill $s
"""
    got = sentry.run("/bin/bash", "-c", script)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.decode().splitlines()
    u0, u1, my_utime = map(int, lines[0].split())
    assert u1 > u0 and my_utime > 0, lines
    # bash (PID 1) waits for grep (PID 2), which runs
    assert lines[1:4] == ["processes 2", "procs_running 1", "procs_blocked 0"], lines
    cat, load = int(lines[4]), lines[5].split()
    assert load[3] == "1/3", load  # cat runs; bash (waiting for it) and the sleeper do not
    assert int(load[4]) == cat  # the last PID handed out
    assert all(0 <= float(v) <= 3 for v in load[:3])


@pytest.mark.skipif(not BUSYBOX, reason="busybox-static is not installed")
def test_rootfs_hard_links_stay_linked_on_copy_up(sentry, tmp_path):
    """Three names of one rootfs inode: a write, a new link and an unlink
    through one name show through the others, as on Linux (overlayfs
    index=on, gVisor), and the rootfs never changes."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "cat", "echo", "stat", "rm", "ln", "chmod"):
        (root / "bin" / applet).symlink_to("/bin/busybox")
    (root / "d").mkdir()
    (root / "e").mkdir()
    (root / "d" / "f").write_text("old\n")
    (root / "d" / "hl").hardlink_to(root / "d" / "f")
    (root / "e" / "h3").hardlink_to(root / "d" / "f")
    ino = (root / "d" / "f").stat().st_ino
    script = ("cat /d/hl; echo more >> /d/f; cat /d/hl /e/h3; stat -c '%h %i %s' /d/f /d/hl /e/h3; "
              "chmod 600 /e/h3; stat -c %a /d/f; ln /e/h3 /e/h4; stat -c %h /d/hl; rm /d/f; "
              "stat -c %h /d/hl; echo again >> /e/h4; cat /d/hl")
    got = sentry.run("/bin/sh", "-c", script, options=("--rootfs", str(root)), env={"PATH": "/bin"})
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().splitlines() == [
        "old", "old", "more", "old", "more", *[f"3 {ino} 9"] * 3, "600", "4", "3", "old", "more", "again"]
    assert (root / "d" / "f").read_text() == "old\n" and (root / "d" / "f").stat().st_nlink == 3
