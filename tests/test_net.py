"""Sockets in the sandbox on every platform: unix stream/dgram/seqpacket
with SCM_RIGHTS, TCP and UDP over the sandbox-only loopback between a
forked client and server (output compared with a native run), and
python3.11 -m http.server fetched by urllib inside one sandbox while the
host sees no listening port."""
from __future__ import annotations

import os
import textwrap
import threading

import pytest

from tests.conftest import native

PYTHON = "/usr/bin/python3.11"


@pytest.mark.parametrize("part", ["unix", "tcp", "udp", "errors", "more"])
def test_sockets_match_native(sentry, cprog, part):
    sentry.matches_native(cprog("net_sockets"), part)


def test_no_network_inside(sentry, cprog):
    """Only the loopback exists: netlink is refused, other hosts unreachable."""
    env = dict(os.environ, NET_SANDBOX="1")
    got = sentry.run(cprog("net_sockets"), "errors", env=env)
    out = got.stdout.decode()
    assert "AF_NETLINK: -1 EAFNOSUPPORT" in out
    assert "connect 8.8.8.8: -1 ENETUNREACH" in out


def _host_listening_ports() -> set[int]:
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


SERVER_SCRIPT = textwrap.dedent("""
    cd "$1"
    /usr/bin/python3.11 -m http.server 18765 > server.log 2>&1 &
    srv=$!
    /usr/bin/python3.11 -c '
    import pathlib, time, urllib.request
    for i in range(400):
        try:
            body = urllib.request.urlopen("http://localhost:18765/index.txt", timeout=20).read().decode()
            break
        except OSError:
            time.sleep(0.05)
    else:
        body = "no server\\n"
    print(body, end="")
    pathlib.Path("fetched").write_text("1")
    time.sleep(0.5)
    '
    kill $srv
    wait $srv
    echo "server log has the GET: $(grep -c "GET /index.txt" server.log)"
""")


@pytest.mark.skipif(not os.path.exists(PYTHON), reason="python3.11 not installed")
def test_http_server_in_sandbox(sentry, tmp_path):
    """The issue's must-show: a web server and its client in one sandbox,
    with --network=none, and no port open on the host."""
    (tmp_path / "index.txt").write_text("hello from inside the sandbox\n")
    script = tmp_path / "serve.sh"
    script.write_text(SERVER_SCRIPT)
    before = _host_listening_ports()
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(_host_listening_ports() - before)
            stop.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        got = sentry.run("/bin/bash", str(script), str(tmp_path), timeout=180)
    finally:
        stop.set()
        watcher.join()
    out = got.stdout.decode()
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert "hello from inside the sandbox" in out
    assert "server log has the GET: 1" in out
    assert 18765 not in seen, "the sandbox's port showed on the host"
    # The sandbox wrote into its overlay, never to the host directory.
    assert not (tmp_path / "fetched").exists()


PYTHON_SOCKETS = textwrap.dedent("""
    import multiprocessing as mp, os, signal, socket, struct
    if __name__ == "__main__":
        with mp.Manager() as m:  # a server process on a unix socket
            d = m.dict(); d["a"] = 1; print("manager", dict(d))
        a, b = socket.socketpair()
        r, w = os.pipe()
        socket.send_fds(a, [b"x"], [w])
        msg, fds, flags, addr = socket.recv_fds(b, 10, 4)
        os.write(fds[0], b"via a passed fd"); print(os.read(r, 100))
        signal.signal(signal.SIGALRM, lambda *a: None)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        s.settimeout(0.3)
        try:
            s.accept()
        except socket.timeout:
            print("accept timed out after the alarm")
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::1", 0))
        v = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); v.sendto(b"six", u.getsockname())
        print(u.recvfrom(10)[0], socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)[0][4][0])
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("")
        c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1); c.bind("\\0sentry-credtest")
        s.sendto(b"hi", "\\0sentry-credtest")
        msg, anc, flags, addr = c.recvmsg(10, 64)
        print(msg, [(l, t, struct.unpack("iII", d)[0] == os.getpid()) for l, t, d in anc], addr == s.getsockname())
""")


@pytest.mark.skipif(not os.path.exists(PYTHON), reason="python3.11 not installed")
def test_python_sockets_match_native(sentry):
    """multiprocessing.Manager, send_fds/recv_fds, a signal during accept,
    IPv6 UDP, getaddrinfo, autobind and SO_PASSCRED from Python."""
    want = native(PYTHON, "-c", PYTHON_SOCKETS)
    assert want.returncode == 0, want.stderr.decode()
    got = sentry.run(PYTHON, "-c", PYTHON_SOCKETS, timeout=180)
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert got.stdout.decode() == want.stdout.decode()
