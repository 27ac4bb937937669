"""The kvm platform on its own: tiny hand-assembled ring-3 guests.

Each guest is assembled at test time (GNU as), written into MemoryFile
pages and mapped through KvmAddressSpace; the test drives Context.switch
and checks every event, the register and XSAVE round trips, that munmap
and mprotect take effect at once (no stale translation), and that close()
leaves nothing behind.
"""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import tempfile
import threading

import pytest

from platforms import base
from platforms.base import PROT_EXEC, PROT_READ, PROT_WRITE, EventKind
from sentry.mm.memfile import MemoryFile

RX, RW, R = PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE, PROT_READ
CODE, DATA, DATA2 = 0x400000, 0x10000000, 0x10001000
PAGE, HUGE = 4096, 2 << 20
XMM0 = 160  # offset of XMM0 in the legacy XSAVE area

kvm_cls = base.lookup("kvm")
_ok, _why = kvm_cls.available()
pytestmark = pytest.mark.skipif(not _ok, reason=f"kvm: {_why}")


def assemble(src: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        s, o, b = (os.path.join(d, n) for n in ("g.s", "g.o", "g.bin"))
        with open(s, "w") as f:
            f.write(".code64\n" + src + "\n")
        subprocess.run(["as", "--64", "-o", o, s], check=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", o, b], check=True)
        with open(b, "rb") as f:
            return f.read()


class Guest:
    """One address space, one context, and helpers to place pages."""

    def __init__(self, platform, memory: MemoryFile):
        self.platform, self.memory = platform, memory
        self.aspace = platform.new_address_space()
        self.ctx = platform.new_context()
        self.state = platform.new_arch_state()

    def page(self, addr: int, data: bytes = b"", prot: int = RW, length: int = PAGE) -> int:
        off = self.memory.allocate(length)
        self.memory.write(off, data)
        self.aspace.map_file(addr, off, length, prot)
        return off

    def load(self, src: str, **regs: int) -> None:
        self.page(CODE, assemble(src), RX)
        self.state.regs.rip = CODE
        for name, value in regs.items():
            setattr(self.state.regs, name, value)

    def run(self, expect: EventKind = EventKind.SYSCALL) -> None:
        event = self.ctx.switch(self.aspace, self.state)
        assert event == expect, (event, self.ctx.signal_info)

    def sysret(self, value: int) -> None:
        self.state.regs.rax = value


@pytest.fixture
def memory():
    m = MemoryFile()
    yield m
    m.close()


@pytest.fixture
def platform(memory):
    p = kvm_cls(memory)
    yield p
    p.close()


@pytest.fixture
def guest(platform, memory):
    return Guest(platform, memory)


def code_end(src: str) -> int:
    return CODE + len(assemble(src))


def test_available_names_the_host_kind():
    ok, why = kvm_cls.available()
    assert ok and any(k in why for k in ("kvm_pvm", "VMX", "SVM"))


def test_syscall_event_and_return_value(guest):
    first = "mov $110, %eax\n mov $7, %edi\n syscall"
    guest.load(first + "\n mov %rax, %r12\n mov $60, %eax\n syscall\n ud2")
    guest.run()
    r = guest.state.regs
    assert r.orig_rax == 110 and r.rdi == 7
    assert r.rip == code_end(first) and r.rcx == r.rip  # rcx/r11 clobbered as on Linux
    assert r.r11 == r.eflags and r.eflags & 0x200
    assert (r.cs, r.ss) == (0x33, 0x2B)
    guest.sysret(4242)
    guest.run()
    assert r.orig_rax == 60 and r.r12 == 4242


def test_gprs_and_segment_bases_round_trip(guest):
    guest.page(DATA, struct.pack("<QQ", 0x1122334455667788, 0x99AABBCCDDEEFF00), R)
    guest.load("mov %fs:0, %rcx\n mov %gs:8, %r11\n mov $39, %eax\n syscall\n ud2")
    names = "rbx rdx rsi rdi rbp r8 r9 r10 r12 r13 r14 r15 rsp".split()
    values = {n: 0x1000_0000_0000 + i * 0x1111 for i, n in enumerate(names)}
    r = guest.state.regs
    for n, v in values.items():
        setattr(r, n, v)
    r.fs_base, r.gs_base = DATA, DATA
    guest.run()
    assert {n: getattr(r, n) for n in names} == values
    assert (r.fs_base, r.gs_base) == (DATA, DATA)
    # rcx/r11 were clobbered by syscall, after the loads: check what the loads saw
    guest.load("mov %fs:0, %rbx\n mov %gs:8, %rdx\n mov $39, %eax\n syscall\n ud2")
    guest.run()
    assert (r.rbx, r.rdx) == (0x1122334455667788, 0x99AABBCCDDEEFF00)


def test_fpu_survives_syscalls_and_other_contexts(platform, memory, guest):
    guest.load("movq %rdi, %xmm0\n mov $39, %eax\n syscall\n movq %xmm0, %rsi\n mov $60, %eax\n syscall\n ud2",
               rdi=0x0123456789ABCDEF)
    guest.run()
    other = Guest(platform, memory)  # another vCPU clobbers its own xmm0 meanwhile
    other.load("pxor %xmm0, %xmm0\n pcmpeqd %xmm0, %xmm0\n mov $39, %eax\n syscall\n ud2")
    other.run()
    guest.run()
    assert guest.state.regs.rsi == 0x0123456789ABCDEF


def test_xsave_round_trips_exactly(guest):
    guest.load("mov $39, %eax\n syscall\n movq %xmm0, %rsi\n mov $39, %eax\n syscall\n ud2")
    guest.run()
    st = guest.state
    guest.ctx.read_fpstate(st)
    before = bytes(st.fpstate)
    st.fpstate[XMM0:XMM0 + 8] = struct.pack("<Q", 0xFEEDFACECAFEBEEF)
    st.fpstate[512] |= 2  # XSTATE_BV: SSE state present
    wanted = bytes(st.fpstate)
    assert wanted != before
    st.fp_dirty = True
    guest.run()
    assert st.regs.rsi == 0xFEEDFACECAFEBEEF and not st.fp_dirty
    guest.ctx.read_fpstate(st)
    assert bytes(st.fpstate) == wanted


def fault(guest, src: str, **regs: int):
    guest.load(src, **regs)
    guest.run(EventKind.SIGNAL)
    return guest.ctx.signal_info


def test_store_to_unmapped_page_is_sigsegv_with_address(guest):
    info = fault(guest, f"movq $1, {DATA + 0x10}\n ud2")
    assert (info.signo, info.code, info.addr, info.access, info.trapno) == (
        signal.SIGSEGV, 1, DATA + 0x10, PROT_WRITE, 14)
    assert guest.state.regs.rip == CODE


def test_write_to_read_only_page(guest):
    guest.page(DATA, b"x", R)
    info = fault(guest, f"mov {DATA}, %rax\n movq $1, {DATA}\n ud2")
    assert (info.signo, info.code, info.addr, info.access) == (signal.SIGSEGV, 2, DATA, PROT_WRITE)
    assert guest.state.regs.rax == ord("x")


def test_executing_a_data_page_faults(guest):
    guest.page(DATA, b"\x90\x90", RW)
    info = fault(guest, f"mov ${DATA}, %rax\n jmp *%rax")
    assert (info.signo, info.addr, info.access) == (signal.SIGSEGV, DATA, PROT_EXEC)


@pytest.mark.parametrize("src, signo, code, at_rip", [
    ("ud2", signal.SIGILL, 2, True),
    ("div %ecx", signal.SIGFPE, 1, True),
    ("hlt", signal.SIGSEGV, 0x80, False),
    ("int $0x80", None, None, None),
])
def test_exceptions_become_signals(guest, src, signo, code, at_rip):
    info = fault(guest, "xor %ecx, %ecx\n " + src)  # 2 bytes, then the faulting instruction
    if signo is None:  # int $0x80: #GP on VMX/SVM, #UD under kvm_pvm; a signal either way
        assert info.signo in (signal.SIGSEGV, signal.SIGILL)
        return
    assert (info.signo, info.code) == (signo, code)
    assert guest.state.regs.rip == CODE + 2
    assert info.addr == (CODE + 2 if at_rip else 0)


def test_int3_is_sigtrap_after_the_instruction(guest):
    info = fault(guest, "int3\n ud2")
    assert (info.signo, info.code, info.trapno) == (signal.SIGTRAP, 0x80, 3)
    assert guest.state.regs.rip == CODE + 1


def test_single_step_is_sigtrap(guest):
    info = fault(guest, "nop\n nop\n ud2", eflags=0x302)
    assert (info.signo, info.trapno) == (signal.SIGTRAP, 1)
    assert guest.state.regs.rip == CODE + 1


LOAD_TWICE = f"mov {DATA}, %rbx\n mov $39, %eax\n syscall\n mov {DATA}, %rbx\n mov $60, %eax\n syscall\n ud2"


def test_munmap_takes_effect_at_once(guest):
    guest.page(DATA, b"A", R)
    guest.load(LOAD_TWICE)
    guest.run()
    assert guest.state.regs.rbx == ord("A")
    guest.aspace.unmap(DATA, PAGE)
    guest.run(EventKind.SIGNAL)
    assert guest.ctx.signal_info.addr == DATA


def test_remap_to_another_page_takes_effect_at_once(guest, memory):
    guest.page(DATA, b"A", R)
    guest.load(LOAD_TWICE)
    guest.run()
    off = memory.allocate(PAGE)
    memory.write(off, b"B")
    guest.aspace.map_file(DATA, off, PAGE, R)
    guest.run()
    assert guest.state.regs.rbx == ord("B")


def test_mprotect_takes_effect_at_once(guest):
    off = guest.page(DATA, b"", RW)
    guest.load(f"movq $1, {DATA}\n mov $39, %eax\n syscall\n movq $2, {DATA}\n mov $60, %eax\n syscall\n ud2")
    guest.run()
    guest.aspace.map_file(DATA, off, PAGE, R)
    guest.run(EventKind.SIGNAL)
    assert guest.ctx.signal_info.access == PROT_WRITE and guest.ctx.signal_info.code == 2
    guest.aspace.map_file(DATA, off, PAGE, RW)
    guest.run()
    assert guest.memory.read(off, 1) == b"\x02"


TOUCH = """
    mov ${base}, %rdi
    mov ${n}, %ecx
1:  movq %rcx, (%rdi)
    add $4096, %rdi
    dec %ecx
    jnz 1b
    mov $39, %eax
    syscall
    jmp {code}
"""


def test_many_pages_mprotect_and_munmap(guest, memory):
    n = 64  # more changes per leaf table than the tracked-store batch threshold
    off = guest.page(DATA, b"", RW, n * PAGE)
    guest.load(TOUCH.format(base=DATA, n=n, code=CODE))
    guest.run()
    assert struct.unpack("<Q", memory.read(off + (n - 1) * PAGE, 8))[0] == 1
    guest.aspace.map_file(DATA, off, n * PAGE, R)
    guest.state.regs.rip = CODE
    guest.run(EventKind.SIGNAL)
    assert guest.ctx.signal_info.addr == DATA and guest.ctx.signal_info.code == 2
    guest.aspace.map_file(DATA, off, n * PAGE, RW)
    guest.aspace.unmap(DATA + 10 * PAGE, 40 * PAGE)
    guest.state.regs.rip = CODE
    guest.run(EventKind.SIGNAL)
    assert guest.ctx.signal_info.addr == DATA + 10 * PAGE and guest.ctx.signal_info.code == 1


def test_huge_pages_where_aligned_and_splitting(guest, memory):
    raw = memory.allocate(2 * HUGE)
    off = (raw + HUGE - 1) & ~(HUGE - 1)
    addr = 0x40000000
    guest.aspace.map_file(addr, off, HUGE, RW)
    assert guest.aspace.lookup(addr + 5 * PAGE) & 0x80  # one 2 MiB entry
    guest.load(TOUCH.format(base=addr, n=512, code=CODE))
    guest.run()
    guest.aspace.unmap(addr + 100 * PAGE, PAGE)  # splits the 2 MiB page
    assert not guest.aspace.lookup(addr + 100 * PAGE) and guest.aspace.lookup(addr + 101 * PAGE)
    guest.state.regs.rip = CODE
    guest.run(EventKind.SIGNAL)
    assert guest.ctx.signal_info.addr == addr + 100 * PAGE
    assert struct.unpack("<Q", memory.read(off + 99 * PAGE, 8))[0] == 512 - 99
    guest.aspace.unmap(addr, HUGE)
    assert not guest.aspace.lookup(addr + 101 * PAGE)


def test_context_moves_between_address_spaces(platform, memory, guest):
    guest.load("mov $1, %r12\n mov $39, %eax\n syscall\n ud2")
    second = Guest(platform, memory)
    second.load("mov $2, %r12\n mov $39, %eax\n syscall\n ud2")
    for g, want in ((guest, 1), (second, 2), (guest, 1)):
        g.state.regs.rip = CODE
        assert guest.ctx.switch(g.aspace, g.state) == EventKind.SYSCALL
        assert g.state.regs.r12 == want


def test_contexts_share_an_address_space(platform, guest):
    guest.page(DATA, b"", RW)
    guest.load(f"incq {DATA}\n mov $39, %eax\n syscall\n ud2")
    other = platform.new_context()
    st2 = platform.new_arch_state()
    st2.regs.rip = CODE
    guest.run()
    assert other.switch(guest.aspace, st2) == EventKind.SYSCALL
    assert struct.unpack("<Q", guest.memory.read(guest.aspace.lookup(DATA) & ~0xFFF & (2**52 - 1), 8))[0] == 2


def test_interrupt_stops_a_spinning_guest_and_resume_works(guest):
    guest.page(DATA, b"", RW)
    guest.load(f"1: cmpq $0, {DATA}\n je 1b\n mov $39, %eax\n syscall\n ud2")
    done = threading.Event()

    def kicker():
        while not done.wait(0.01):
            guest.ctx.interrupt()

    t = threading.Thread(target=kicker)
    t.start()
    try:
        guest.run(EventKind.INTERRUPT)
    finally:
        done.set()
        t.join()
    assert CODE <= guest.state.regs.rip < CODE + 16
    off = guest.aspace.lookup(DATA) & 0x000FFFFFFFFFF000
    guest.memory.write(off, b"\x01")
    event = guest.ctx.switch(guest.aspace, guest.state)
    while event == EventKind.INTERRUPT:  # a kick may still be pending
        event = guest.ctx.switch(guest.aspace, guest.state)
    assert event == EventKind.SYSCALL and guest.state.regs.orig_rax == 39


def _kvm_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += "kvm" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return n


def test_close_leaves_nothing(memory):
    fds = _kvm_fds()
    p = kvm_cls(memory)
    g = Guest(p, memory)
    g.load("mov $39, %eax\n syscall\n ud2")
    g.run()
    assert p.counts() == (2, 1)  # the context and this thread's maintenance vCPU
    g.ctx.release()
    g.aspace.release()
    g.aspace.release()
    assert p.counts()[1] == 0
    p.close()
    p.close()
    assert _kvm_fds() == fds
    with open("/proc/self/maps") as f:
        assert "kvm" not in f.read()


def test_use_after_close_is_an_error_and_release_a_no_op(memory):
    p = kvm_cls(memory)
    g = Guest(p, memory)
    p.close()
    g.aspace.release()
    g.ctx.release()
    with pytest.raises(base.PlatformError):
        g.aspace.map_file(DATA, 0, PAGE, RW)
    with pytest.raises(base.PlatformError):
        g.ctx.switch(g.aspace, g.state)
    with pytest.raises(base.PlatformError):
        p.new_context()


def test_recycled_page_table_pages_show_no_stale_mapping(platform, memory):
    """Run until the page-table pool is exhausted and recycled. Every
    address space has the same shape (code and data in one leaf table, so
    four table pages, reused in the same roles) and maps DATA to the other
    page than the one before: a recycled table page KVM still shadowed
    would show the previous address space's page."""
    data = CODE + PAGE
    code = memory.allocate(PAGE)
    memory.write(code, assemble(f"mov {data}, %rbx\n mov $39, %eax\n syscall\n ud2"))
    pages = []
    for letter in b"AB":
        off = memory.allocate(PAGE)
        memory.write(off, bytes([letter]))
        pages.append((off, letter))
    ctx, state = platform.new_context(), platform.new_arch_state()
    i, recycled = 0, 0
    while recycled < 8:
        aspace = platform.new_address_space()
        aspace.map_file(CODE, code, PAGE, RX)
        off, letter = pages[i % 2]
        aspace.map_file(data, off, PAGE, R)
        state.regs.rip = CODE
        assert ctx.switch(aspace, state) == EventKind.SYSCALL
        assert state.regs.rbx == letter, f"stale mapping in address space {i}"
        aspace.release()
        i += 1
        recycled += platform.shadow_zaps() > 0


def test_threads_run_while_another_thread_edits_the_page_tables(platform, memory, guest):
    guest.page(DATA, b"", RW)
    guest.load(f"1: incq {DATA}\n mov $39, %eax\n syscall\n jmp 1b")
    errors: list[BaseException] = []

    def runner():
        try:
            ctx, st = platform.new_context(), platform.new_arch_state()
            st.regs.rip = CODE
            for _ in range(200):
                assert ctx.switch(guest.aspace, st) == EventKind.SYSCALL
            ctx.release()
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        off = memory.allocate(PAGE)
        guest.aspace.map_file(DATA2, off, PAGE, RW)
        guest.aspace.unmap(DATA2, PAGE)
        memory.free(off, PAGE)
    for t in threads:
        t.join()
    assert not errors, errors
    assert struct.unpack("<Q", memory.read(guest.aspace.lookup(DATA) & 0x000FFFFFFFFFF000, 8))[0] == 400


def test_avx_state_survives_and_round_trips(platform, memory, guest):
    """The guest's cpuid is the host's (ring 3 runs natively): if it offers
    AVX the upper YMM halves must survive switches and appear in XSAVE."""
    guest.page(DATA, bytes(range(32)), R)
    guest.load(f"mov $1, %eax\n xor %ecx, %ecx\n cpuid\n mov %rcx, %r13\n mov $39, %eax\n syscall\n"
               f" vmovdqu {DATA}, %ymm1\n mov $39, %eax\n syscall\n"
               f" vmovdqu %ymm1, %ymm2\n vextracti128 $1, %ymm2, %xmm3\n movq %xmm3, %r12\n mov $39, %eax\n syscall\n ud2")
    guest.run()
    if not (guest.state.regs.r13 >> 28) & 1:
        pytest.skip("no AVX on this CPU")
    guest.run()
    other = Guest(platform, memory)
    other.load("vpcmpeqd %ymm1, %ymm1, %ymm1\n mov $39, %eax\n syscall\n ud2")
    other.run()
    guest.ctx.read_fpstate(guest.state)
    assert guest.state.fpstate[576 + 16:576 + 32] == bytes(range(16, 32))  # YMM1 upper half, standard format
    guest.run()
    assert guest.state.regs.r12 == struct.unpack("<Q", bytes(range(16, 24)))[0]


def test_unmapping_a_whole_gib_takes_effect(guest):
    gib = 1 << 30
    guest.page(gib, b"G", R)
    guest.page(2 * gib, b"H", R)
    guest.load(f"mov {gib}, %rbx\n mov ${2 * gib}, %rsi\n mov (%rsi), %rdx\n mov $39, %eax\n syscall\n"
               f" mov {gib}, %rbx\n ud2")
    guest.run()
    assert (guest.state.regs.rbx, guest.state.regs.rdx) == (ord("G"), ord("H"))
    guest.aspace.unmap(gib, gib)
    assert not guest.aspace.lookup(gib) and guest.aspace.lookup(2 * gib)
    guest.run(EventKind.SIGNAL)
    assert guest.ctx.signal_info.addr == gib


def test_simd_exception_is_sigfpe_with_the_linux_code(guest):
    guest.page(DATA, b"", RW)
    prologue = ("sub $8, %rsp\n stmxcsr (%rsp)\n andl $~0x200, (%rsp)\n ldmxcsr (%rsp)\n"  # unmask divide-by-zero
                " mov $1, %eax\n cvtsi2sd %eax, %xmm0\n xorpd %xmm1, %xmm1")
    info = fault(guest, prologue + "\n divsd %xmm1, %xmm0\n ud2", rsp=DATA + PAGE)
    assert (info.signo, info.code, info.trapno) == (signal.SIGFPE, 3, 19)  # FPE_FLTDIV, #XM
    assert info.addr == guest.state.regs.rip == code_end(prologue)


def test_tlb_shootdown_kicks_vcpus_running_in_the_address_space(platform, guest):
    """The VMX/SVM path, forced on here: an unmap makes a vCPU running in
    the address space leave the guest (INTERRUPT) before unmap returns,
    even though it never touches the page; later it faults on it."""
    platform.set_tlb_shootdown(True)
    flags = guest.page(DATA2, b"", RW)  # +0: the guest is running, +8: go
    guest.page(DATA, b"", RW)
    guest.load(f"1: movq $1, {DATA2}\n cmpq $0, {DATA2 + 8}\n je 1b\n mov {DATA}, %rax\n ud2")
    events, first, resume = [], threading.Event(), threading.Event()

    def vcpu_thread():
        events.append(guest.ctx.switch(guest.aspace, guest.state))
        first.set()
        resume.wait()
        events.append(guest.ctx.switch(guest.aspace, guest.state))

    t = threading.Thread(target=vcpu_thread)
    t.start()
    try:
        while guest.memory.read(flags, 1) != b"\x01":
            pass
        guest.aspace.unmap(DATA, PAGE)  # returns only after the vCPU has left the guest
        guest.memory.write(flags, b"\0")  # a vCPU still in the guest would set it again
        if not first.wait(timeout=30):  # a hang guard only: the switch has already returned
            guest.ctx.interrupt()
        assert events == [EventKind.INTERRUPT] and guest.memory.read(flags, 1) == b"\0"
    finally:
        guest.memory.write(flags + 8, b"\x01")
        resume.set()
        t.join()
    assert events == [EventKind.INTERRUPT, EventKind.SIGNAL] and guest.ctx.signal_info.addr == DATA


def test_installed_ring0_stub_matches_the_layout_compiled_in():
    """stub/bin/ring0.bin against stub/ring0.h as the extension saw it."""
    import stub
    from stub._native import lib

    with open(stub.binary("ring0.bin"), "rb") as f:
        image = f.read()
    assert len(image) == lib.R0_SIZE
    out = 0xE6  # outb %al, $imm8
    for v in range(lib.R0_NVECTORS):
        at = lib.R0_VECTORS + v * lib.R0_VEC_STRIDE
        assert image[at:at + 2] == bytes([out, lib.R0_PORT_VECTOR + v])
    assert image[lib.R0_LSTAR:lib.R0_LSTAR + 2] == bytes([out, lib.R0_PORT_SYSCALL])
    assert image[lib.R0_IRETQ:lib.R0_IRETQ + 2] == b"\x48\xcf"  # iretq
    assert image[lib.R0_FLUSH_IRETQ] == 0x50  # push %rax
    assert bytes([out, lib.R0_PORT_DONE]) in image[lib.R0_BATCH:lib.R0_LSTAR]


def test_many_contexts_and_pooling(platform, memory, guest):
    guest.load("pcmpeqd %xmm0, %xmm0\n mov $39, %eax\n syscall\n ud2")
    contexts = [platform.new_context() for _ in range(300)]
    for ctx in contexts[::50]:
        st = platform.new_arch_state()
        st.regs.rip = CODE
        assert ctx.switch(guest.aspace, st) == EventKind.SYSCALL
    for ctx in contexts:
        ctx.release()
    again = platform.new_context()  # from the pool: no FPU state of its last owner
    st = platform.new_arch_state()
    again.read_fpstate(st)
    fresh = platform.new_arch_state()
    assert st.fpstate[XMM0:XMM0 + 16] == bytes(16)  # its last owner set XMM0 to all ones
    assert st.fpstate[:32] == fresh.fpstate[:32]
