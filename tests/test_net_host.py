"""--network=host on every platform: guest TCP and UDP sockets are host
sockets the Sentry works (sentry.net.hostinet).

A C client of host servers (threads of this test on 127.0.0.1) with poll,
epoll and select, compared with a native run; python3.11's urllib reaching
a host web server (and, with --network=none, not reaching it); a guest
``python3.11 -m http.server`` and guest TCP/UDP servers reached from the
host; what stays refused or sandbox-internal; the Python API; the
Sentry's seccomp filter allowing host sockets only when asked."""
from __future__ import annotations

import contextlib
import http.server
import os
import pathlib
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import urllib.request

import pytest

from tests.conftest import native

PYTHON = "/usr/bin/python3.11"
needs_python = pytest.mark.skipif(not os.path.exists(PYTHON), reason="python3.11 not installed")


class _LineEcho(socketserver.StreamRequestHandler):
    """Each line L back as "echo:L"; at EOF "bye\\n", then close."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"echo:" + line)
        with contextlib.suppress(OSError):
            self.wfile.write(b"bye\n")


class _DgramEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(b"echo:" + data, self.client_address)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True


@contextlib.contextmanager
def host_echo_servers():
    """(TCP port, UDP port) of line and datagram echo servers on 127.0.0.1."""
    tcp = _TCPServer(("127.0.0.1", 0), _LineEcho)
    udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _DgramEcho)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (tcp, udp)]
    for t in threads:
        t.start()
    try:
        yield tcp.server_address[1], udp.server_address[1]
    finally:
        for s in (tcp, udp):
            s.shutdown()
            s.server_close()


@contextlib.contextmanager
def host_web_server(body: bytes):
    """A web server on 127.0.0.1 answering every GET with ``body``; yields
    (port, list of the paths asked for)."""
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1], paths
    finally:
        srv.shutdown()
        srv.server_close()


HOST = ("--network", "host")


def test_client_of_host_servers_matches_native(sentry, cprog):
    """TCP: connect, names, poll, FIONREAD, epoll level- and
    edge-triggered, select, MSG_PEEK, recvmsg, SO_RCVTIMEO, half close,
    EPIPE, a non-blocking connect, a refused one; UDP: sendto/recvfrom,
    connected, epoll, MSG_TRUNC; options."""
    prog = cprog("net_host")
    with host_echo_servers() as (tcp, udp):
        want = native(prog, "client", str(tcp), str(udp))
        assert want.returncode == 0, want.stdout
        got = sentry.run(prog, "client", str(tcp), str(udp), options=HOST, timeout=120)
    assert got.returncode == 0, got.stdout.decode() + got.stderr.decode()[-2000:]
    assert got.stdout.decode() == want.stdout.decode()


FETCH = textwrap.dedent("""
    import sys, urllib.request
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode(), end="")
    except OSError as e:
        print("failed:", getattr(e, "reason", e))
""")


@needs_python
def test_guest_reaches_host_web_server_only_with_network_host(sentry):
    with host_web_server(b"hello from the host\n") as (port, paths):
        url = f"http://127.0.0.1:{port}/from-guest"
        got = sentry.run(PYTHON, "-c", FETCH, url, options=HOST, timeout=120)
        assert got.returncode == 0, got.stderr.decode()[-2000:]
        assert got.stdout == b"hello from the host\n"
        assert paths == ["/from-guest"]
        shut = sentry.run(PYTHON, "-c", FETCH, url, options=("--network", "none"), timeout=120)
        assert shut.returncode == 0, shut.stderr.decode()[-2000:]
        assert shut.stdout.startswith(b"failed: [Errno 111] Connection refused"), shut.stdout
        assert paths == ["/from-guest"]  # the host server never heard from the second guest


def _read_port(proc: subprocess.Popen, prefix: bytes) -> int:
    """The port a guest server prints on its first line starting with ``prefix``."""
    while True:
        line = proc.stdout.readline()
        assert line, f"the guest server ended: {proc.stderr.read().decode()[-2000:]}"
        if line.startswith(prefix):
            return int(line.split(b"port ")[1].split()[0])


@contextlib.contextmanager
def guest(sentry, *argv: str):
    """A `sentry run --network=host` running in the background."""
    cmd = [sys.executable, "-m", "sentry", "run", "--platform", sentry.platform, *HOST, "--", *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()  # forwarded to the guest
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@needs_python
def test_host_fetches_from_guest_web_server(sentry, tmp_path):
    (tmp_path / "index.txt").write_text("served from inside the sandbox\n")
    with guest(sentry, PYTHON, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
               "--directory", str(tmp_path)) as proc:
        port = _read_port(proc, b"Serving HTTP")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.txt", timeout=30).read()
        assert body == b"served from inside the sandbox\n"
    assert _refused(port), "the guest's listening socket outlived the sandbox"


def test_host_reaches_guest_tcp_and_udp_servers(sentry, cprog):
    prog = cprog("net_host")
    with guest(sentry, prog, "tcp-server") as proc:
        port = _read_port(proc, b"port ")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            c.sendall(b"x" * 1_000_000)  # more than the socket buffers: the guest reads in many rounds
            c.shutdown(socket.SHUT_WR)
            assert c.makefile("rb").readline() == b"guest read 1000000 bytes\n"
        assert proc.stdout.readline() == b"served 1000000 bytes\n"
        assert proc.wait(timeout=60) == 0
    with guest(sentry, prog, "udp-server", "3") as proc:
        port = _read_port(proc, b"port ")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(30)
            for word in (b"one", b"two", b"three"):
                u.sendto(word, ("127.0.0.1", port))
                data, source = u.recvfrom(100)
                assert (data, source) == (b"echo:" + word, ("127.0.0.1", port))
        assert proc.stdout.readline() == b"echoed 3\n"
        assert proc.wait(timeout=60) == 0


REFUSED = textwrap.dedent("""
    import errno, socket, sys
    def show(label, fn):
        try:
            fn()
            print(label, "ok")
        except OSError as e:
            print(label, errno.errorcode[e.errno])
    show("AF_NETLINK", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
    show("AF_PACKET", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
    show("SOCK_RAW", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    show("socketpair AF_INET", lambda: socket.socketpair(socket.AF_INET))
    show("unix connect to the host's socket", lambda: socket.socket(socket.AF_UNIX).connect(sys.argv[1]))
    a, b = socket.socketpair()
    a.send(b"unix stays inside")
    print(b.recv(100).decode())
    s = socket.socket()
    show("SO_BINDTODEVICE", lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo"))
    show("SO_MARK", lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 1))
    show("TCP_CONGESTION", lambda: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno"))
    show("SO_KEEPALIVE", lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
    a, b = socket.socket(), socket.socket()
    for x in (a, b):
        x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    a.bind(("127.0.0.1", 0))
    a.listen()
    show("SO_REUSEPORT shares no port", lambda: b.bind(a.getsockname()))
""")


@needs_python
def test_what_stays_refused_or_inside(sentry, tmp_path):
    """Other families stay refused, AF_UNIX stays the sandbox's own (a
    host unix listener is not reached), privileged options are EPERM."""
    path = tmp_path / "host.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)
    try:
        got = sentry.run(PYTHON, "-c", REFUSED, str(path), options=HOST, timeout=120)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert got.stdout.decode().splitlines() == [
        "AF_NETLINK EAFNOSUPPORT", "AF_PACKET EAFNOSUPPORT", "SOCK_RAW EPERM", "socketpair AF_INET ENOTSUP",
        "unix connect to the host's socket ECONNREFUSED", "unix stays inside",
        "SO_BINDTODEVICE EPERM", "SO_MARK EPERM", "TCP_CONGESTION EPERM", "SO_KEEPALIVE ok",
        "SO_REUSEPORT shares no port EADDRINUSE"]


LINGER = textwrap.dedent("""
    import socket, struct, sys, time
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 600))
    s.setblocking(False)
    try:
        while True:
            s.send(b"x" * 65536)
    except BlockingIOError:
        pass
    start = time.monotonic()
    s.close()
    print("close returned at once:", time.monotonic() - start < 10)
""")


@needs_python
def test_lingering_close_does_not_hold_the_sentry(sentry):
    """SO_LINGER of 600 s and a peer that never reads: Linux's close would
    wait; the Sentry's thread must not (the host sends in the background)."""
    with socket.create_server(("127.0.0.1", 0)) as never_accepts:
        got = sentry.run(PYTHON, "-c", LINGER, str(never_accepts.getsockname()[1]), options=HOST, timeout=120)
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert got.stdout == b"close returned at once: True\n"


@needs_python
def test_api_network_host(platform):
    from sentry.api import Sandbox

    with pytest.raises(ValueError, match="network"):
        Sandbox(platform=platform, network="bridge")
    with host_web_server(b"api\n") as (port, paths):
        r = Sandbox(platform=platform, network="host").run([PYTHON, "-c", FETCH, f"http://127.0.0.1:{port}/api"],
                                                           timeout=120)
        assert (r.exit_status, r.stdout) == (0, b"api\n"), r.stderr
        r = Sandbox(platform=platform).run([PYTHON, "-c", FETCH, f"http://127.0.0.1:{port}/none"], timeout=120)
        assert r.stdout.startswith(b"failed:"), r.stdout
    assert paths == ["/api"]


SECCOMP = textwrap.dedent("""
    import os, socket, sys
    from sentry import seccomp_self
    with seccomp_self.network(sys.argv[1]):
        seccomp_self.install()
    NB = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    for label, args in [("tcp", (socket.AF_INET, socket.SOCK_STREAM | NB)),
                        ("udp6", (socket.AF_INET6, socket.SOCK_DGRAM | NB, socket.IPPROTO_UDP)),
                        ("blocking tcp", (socket.AF_INET, socket.SOCK_STREAM)),
                        ("unix", (socket.AF_UNIX, socket.SOCK_STREAM | NB)),
                        ("netlink", (socket.AF_NETLINK, socket.SOCK_RAW | NB)),
                        ("raw", (socket.AF_INET, socket.SOCK_RAW | NB, socket.IPPROTO_ICMP))]:
        try:
            socket.socket(*args).close()
            print(label, "ok")
        except PermissionError:
            print(label, "EPERM")
""")


@pytest.mark.parametrize("mode", ["none", "host"])
def test_seccomp_allows_host_sockets_only_with_network_host(mode):
    """With network "host" the Sentry's filter allows the sockets hostinet
    makes (AF_INET/AF_INET6, TCP/UDP, non-blocking, close-on-exec) and no
    other; without it, none."""
    got = subprocess.run([sys.executable, "-c", SECCOMP, mode], capture_output=True, timeout=60,
                         cwd=pathlib.Path(__file__).parent.parent)
    assert got.returncode == 0, got.stderr
    ok = "ok" if mode == "host" else "EPERM"
    assert got.stdout.decode().splitlines() == [f"tcp {ok}", f"udp6 {ok}", "blocking tcp EPERM", "unix EPERM",
                                                "netlink EPERM", "raw EPERM"]


LEAVE_OPEN = textwrap.dedent("""
    import socket, sys
    socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(50)]
    for i, s in enumerate(socks):
        s.sendall(b"%d\\n" % i)
    print(sum(s.makefile("rb").readline() == b"echo:%d\\n" % i for i, s in enumerate(socks)))
    listener = socket.create_server(("127.0.0.1", 0))
    a, b = socket.socketpair()
    socket.send_fds(a, [b"x"], [listener.fileno()])  # left unreceived in a unix socket's queue
    print("port", listener.getsockname()[1], flush=True)
    # exit without closing anything
""")


@needs_python
def test_host_sockets_end_with_the_sandbox(platform):
    """50 connections at once; a guest that exits without closing its host
    sockets (one of them in flight in a unix socket's queue) leaves none
    open in the Sentry's process (the API runs it in this one)."""
    from sentry.api import Sandbox
    from sentry.net.hostinet import NOTIFIER

    before = NOTIFIER.count()
    with host_echo_servers() as (tcp, _udp):
        r = Sandbox(platform=platform, network="host").run([PYTHON, "-c", LEAVE_OPEN, str(tcp)], timeout=120)
    assert r.exit_status == 0, r.stderr.decode()[-2000:]
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "50"
    assert _refused(int(lines[1].split()[1]))
    assert NOTIFIER.count() == before
