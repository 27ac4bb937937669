"""Real tools inside the sandbox, on every platform: git, gcc (which forks
and execs cc1, as and ld), sqlite3 with a file database, a tar round trip,
and the process and memory tools (ps, top, free, df) reading the Sentry's
/proc. Each prints what it prints natively, or what a sandbox must show
instead, and the host directories they work in stay as they were."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import native
from test_fs_vfs import snapshot

GIT_ENV = ("export HOME=\"$PWD\" GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com"
           " GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com"
           " GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z")

# Each script runs in an empty directory given as $1; natively it runs in
# one directory, in the sandbox in another that the host never sees change.
SCRIPTS = {
    "git": GIT_ENV + """
git init -q -b main repo && cd repo
printf 'hello\\n' > a && mkdir d && printf 'x\\n' > d/b && ln -s a link
git add a d link && git commit -qm first
echo more >> a && git mv d/b d/c && git commit -qam second
git log --format='%H %T %s'
git status --porcelain --branch
git cat-file -p HEAD:a
git fsck --strict --no-progress && echo fsck ok
""",
    "gcc": """
cat > hello.c <<'EOF'
#include <math.h>
#include <stdio.h>
int main(int argc, char **argv) { printf("hello %d %.6f %s\\n", argc, sqrt(2.0), argv[1]); return 3; }
EOF
gcc -O1 -o hello hello.c -lm && { ./hello world || echo "exit $?"; }
""",
    "sqlite3": """
sqlite3 db 'create table t(k integer primary key, v text); insert into t(v) values ("a"), ("b"), ("c");'
sqlite3 db 'update t set v = v || v where k > 1; delete from t where k = 1;'
sqlite3 db 'select k, v from t order by k; pragma integrity_check; select count(*) from sqlite_master;'
""",
    "tar": """
mkdir -p src/sub/deeper && printf 'one\\n' > src/a && head -c 300000 /bin/ls > src/sub/big
chmod 640 src/a && ln -s ../a src/sub/link && printf '' > src/sub/deeper/empty && touch -d @1700000000 src/a
tar czf t.tgz src && mkdir out && tar xzf t.tgz -C out
for d in src out/src; do echo "== tree"; (cd $d && find . -printf '%p %y %m %s %l\\n' | sort && find . -type f | sort | xargs sha256sum); done
echo "== archive"; tar tzvf t.tgz --numeric-owner --full-time | awk '{print $1, $3, $6}' | sort
stat -c '%Y' out/src/a
""",
}


@pytest.mark.parametrize("tool", sorted(SCRIPTS))
def test_tool_prints_as_natively_and_leaves_host_alone(sentry, tool, tmp_path):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    (tmp_path / "native").mkdir()
    (tmp_path / "sandbox").mkdir()
    argv = ("/bin/bash", "-ec", 'cd "$1"\n' + SCRIPTS[tool], tool)
    want = native(*argv, str(tmp_path / "native"))
    assert want.returncode == 0, want.stderr
    before = snapshot(str(tmp_path / "sandbox"))
    got = sentry.run(*argv, str(tmp_path / "sandbox"), timeout=180)
    assert got.stderr == want.stderr
    assert got.returncode == 0
    assert got.stdout == want.stdout
    assert snapshot(str(tmp_path / "sandbox")) == before
    if tool == "tar":  # and the round trip really is identical: names, types, modes, sizes, checksums
        source, extracted, _archive = got.stdout.decode().split("== tree\n")[1:3] + [""]
        extracted = extracted.split("== archive\n")[0]
        assert source == extracted and source.count("\n") >= 9


def test_gcc_runs_its_passes_as_guest_processes(sentry, tmp_path):
    """gcc's cc1, as and collect2/ld are guest processes of the sandbox
    (exec events in the trace), not host ones."""
    trace = tmp_path / "trace.json"
    got = sentry.run("/bin/bash", "-ec", "cd /tmp && printf 'int main(void){return 0;}\\n' > m.c && gcc m.c -o m && ./m",
                     options=("--strace-json", str(trace)), timeout=180)
    assert got.returncode == 0, got.stderr
    execs = [json.loads(line)["detail"]["path"] for line in trace.read_text().splitlines()
             if json.loads(line)["type"] == "exec"]
    names = {p.rsplit("/", 1)[1].removeprefix("x86_64-linux-gnu-").split(".")[0] for p in execs}
    assert {"cc1", "as", "collect2", "ld"} <= names, execs
    assert execs[-1] == "/tmp/m"


def test_ps_sees_the_sandbox_processes_only(sentry):
    script = "sleep 30 & ps -e -o pid=,ppid=,stat=,comm=; busybox ps -o pid,ppid,comm; kill $!; wait"
    got = sentry.run("/bin/bash", "-c", script)
    assert got.returncode == 143 or got.returncode == 0, got.stderr
    rows = [line.split() for line in got.stdout.decode().splitlines()]
    procps = [r for r in rows if len(r) == 4]
    assert [(r[0], r[1], r[3]) for r in procps] == [("1", "0", "bash"), ("2", "1", "sleep"), ("3", "1", "ps")]
    assert rows[len(procps)] == ["PID", "PPID", "COMMAND"]
    busybox = rows[len(procps) + 1:]
    assert [r[:3] for r in busybox[:2]] == [["1", "0", "bash"], ["2", "1", "sleep"]]
    assert busybox[2][1:] == ["1", "busybox"]


def test_top_free_and_df_read_the_sandbox(sentry):
    limit = 256 << 20
    got = sentry.run("/bin/bash", "-c", "top -b -n1; echo ---; free -b; echo ---; df -P / /dev/shm /proc",
                     options=("--memory", str(limit)))
    assert got.returncode == 0, got.stderr
    top, free, df = got.stdout.decode().split("---\n")
    assert "Tasks:   2 total" in top, top  # bash and top
    me = [line.split() for line in top.splitlines() if line.split()[-1:] == ["top"]]
    assert len(me) == 1 and int(me[0][4]) > 0 and int(me[0][5]) > 0, top  # VIRT and RES, in KiB
    mem = next(line.split() for line in free.splitlines() if line.startswith("Mem:"))
    assert int(mem[1]) == limit and 0 < int(mem[2]) < limit, free  # the limit, and what the guest uses
    fs = {line.split()[-1]: line.split()[0] for line in df.splitlines()[1:]}
    assert fs == {"/": "overlay", "/dev/shm": "tmpfs", "/proc": "proc"}, df
    assert native("free", "-b").returncode == 0  # the tool itself works on this host
