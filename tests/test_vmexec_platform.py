"""The vmexec platform on its own: tiny hand-assembled guests (bytes below,
with their assembly), no kernel. Covers every event kind, the register and
XSAVE round trips, faults, interrupts, address-space moves, the stub's
confinement (allowlist, fds, namespaces, lifetime) and hostile mailboxes."""
from __future__ import annotations

import errno
import os
import select
import struct
import subprocess
import sys
import threading
import time

import pytest

from platforms import base
from platforms.base import PROT_READ, PROT_WRITE, EventKind, PlatformError

vmexec = pytest.importorskip("platforms.vmexec")
from stub._native import ffi, lib  # noqa: E402

CODE, STACK_TOP, DATA = 0x400000, 0x402000, 0x500000
PAGE = 4096
RWX = 7

SYSCALL2 = bytes.fromhex("0f05 0f05")  # syscall; syscall
FS_READ = bytes.fromhex("64488b1c2508000000 b827000000 0f05")  # mov %fs:8,%rbx; mov $39,%eax; syscall
XMM = bytes.fromhex(  # movq %xmm0,%rax; movabs $0x1122334455667788,%rbx; movq %rbx,%xmm1; syscall; syscall
    "66480f7ec0 48bb8877665544332211 66480f6ecb 0f05 0f05")
YMM = bytes.fromhex("c4e37d39c201 66480f7ed0 0f05")  # vextracti128 $1,%ymm0,%xmm2; movq %xmm2,%rax; syscall
STORE = bytes.fromhex("48b80000500000000000 48c70001000000")  # movabs $0x500000,%rax; movq $1,(%rax)
LOAD = bytes.fromhex("48b80800500000000000 488b18")  # movabs $0x500008,%rax; mov (%rax),%rbx
UD2 = bytes.fromhex("0f0b")
INT3 = bytes.fromhex("cc90")  # int3; nop
LOOP = bytes.fromhex("ebfe")  # 1: jmp 1b
DIV0 = bytes.fromhex("31c9 f7f1")  # xor %ecx,%ecx; div %ecx
SLOT0 = lib.VMEXEC_MBOX + lib.VMEXEC_SLOTS_OFF
CORRUPT = (  # movabs $slot0.uc,%rax; movq $1,(%rax); movabs $slot0.state,%rax; movl $EVENT,(%rax); 1: jmp 1b
    b"\x48\xb8" + struct.pack("<Q", SLOT0 + 16) + bytes.fromhex("48c70001000000")
    + b"\x48\xb8" + struct.pack("<Q", SLOT0) + bytes.fromhex("c70001000000 ebfe"))

GPRS = "r15 r14 r13 r12 rbp rbx r10 r9 r8 rax rdx rsi rdi rsp".split()  # all but rcx/r11 (syscall clobbers)


@pytest.fixture
def plat():
    from sentry.mm.memfile import MemoryFile

    ok, why = vmexec.VmexecPlatform.available()
    if not ok:
        pytest.skip(why)
    mem = MemoryFile(capacity=1 << 30)
    p = vmexec.VmexecPlatform(mem)
    yield p
    p.close()
    mem.close()


def guest(p, code: bytes, *, data: bytes | None = None):
    """A new address space with ``code`` at CODE (RWX, stack page above it)
    and optionally a read-write DATA page; a fresh context and state."""
    off = p.memory.allocate(2 * PAGE)
    p.memory.write(off, code)
    space = p.new_address_space()
    space.map_file(CODE, off, 2 * PAGE, RWX)
    if data is not None:
        doff = p.memory.allocate(PAGE)
        p.memory.write(doff, data)
        space.map_file(DATA, doff, PAGE, PROT_READ | PROT_WRITE)
    state = p.new_arch_state()
    state.regs.rip, state.regs.rsp = CODE, STACK_TOP
    return space, p.new_context(), state


def stub_children() -> set[int]:
    pids = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.update(int(x) for x in f.read().split())
    return pids


# ---- layout ------------------------------------------------------------------

def test_layout():
    """The stub's assembly (stub-vmexec.c) and handler use these offsets."""
    assert ffi.offsetof("struct vmexec_cmd", "seq") == 0
    assert ffi.offsetof("struct vmexec_cmd", "nr") == 8
    assert ffi.offsetof("struct vmexec_cmd", "args") == 16
    assert ffi.offsetof("struct vmexec_cmd", "ss_sp") == 64
    assert ffi.offsetof("struct vmexec_result", "ret") == 8
    assert [ffi.offsetof("struct vmexec_msg", f) for f in ("state", "uc", "info", "fs_base", "cmd")] == [0, 16, 24, 32, 48]
    assert ffi.offsetof("struct vmexec_sigcontext", "rip") == 128
    assert ffi.offsetof("struct vmexec_sigcontext", "fpstate") == 184
    assert ffi.sizeof("struct vmexec_siginfo") == 128
    assert ffi.sizeof("struct vmexec_call") == 56 and lib.VMEXEC_BATCH_OFF >= ffi.sizeof("struct vmexec_cmd")
    assert lib.VMEXEC_BATCH_OFF + lib.VMEXEC_BATCH_MAX * 56 <= PAGE
    assert lib.VMEXEC_MBOX >= base.Platform.max_user_address
    assert lib.VMEXEC_SLOT_SIZE & (lib.VMEXEC_SLOT_SIZE - 1) == 0


# ---- batched mapping calls ----------------------------------------------------

def test_mappings_made_before_the_stub_or_in_a_batch_apply_in_order(plat):
    """Calls recorded before the stub exists (here: 150 maps, then an unmap
    and a remap over part of them, so more than one batch) and inside
    ``batch()`` are all in force, in order, when the guest runs."""
    values = plat.memory.allocate(200 * PAGE)
    for i in range(200):
        plat.memory.write(values + i * PAGE + 8, struct.pack("<Q", 1000 + i))  # LOAD reads DATA+8
    space, ctx, st = guest(plat, LOAD + bytes.fromhex("0f05"))
    assert space._stub is None  # nothing was run yet: all recorded
    for i in range(150):
        space.map_file(DATA + i * PAGE, values + i * PAGE, PAGE, PROT_READ)
    space.unmap(DATA, PAGE)
    space.map_file(DATA, values + 199 * PAGE, PAGE, PROT_READ)  # DATA+8 now reads page 199
    assert ctx.switch(space, st) == EventKind.SYSCALL and st.regs.rbx == 1199
    with space.batch():
        space.unmap(DATA, PAGE)
        space.map_file(DATA, values + 42 * PAGE, PAGE, PROT_READ)
        assert space._pending  # not yet run
    assert not space._pending
    st.regs.rip = CODE
    assert ctx.switch(space, st) == EventKind.SYSCALL and st.regs.rbx == 1042
    with space.batch():
        space.unmap(DATA, PAGE)
    st.regs.rip = CODE
    assert ctx.switch(space, st) == EventKind.SIGNAL  # unmapped: the load faults


def test_a_batch_stops_at_the_first_failing_call(plat):
    space, ctx, st = guest(plat, SYSCALL2)
    assert ctx.switch(space, st) == EventKind.SYSCALL
    stub = space.stub()
    off = plat.memory.allocate(PAGE)
    bad = (9, DATA, PAGE, PROT_READ, 0x11, 99, 0)  # mmap of a fd the stub does not have
    with pytest.raises(PlatformError, match="batch of 3"):
        stub.run_calls([(9, DATA, PAGE, PROT_READ, 0x11, lib.VMEXEC_FD_MEMORY, off), bad,
                        (9, DATA + PAGE, PAGE, PROT_READ, 0x11, lib.VMEXEC_FD_MEMORY, off)])
    with pytest.raises(PlatformError, match="batch of 1"):
        stub.run_calls([(56, lib.VMEXEC_CLONE_FLAGS, 0, 0, 0, 0, 0)])  # clone is never batched
    space.map_file(DATA + 2 * PAGE, off, PAGE, PROT_READ)  # the stub still serves commands


# ---- events and registers -----------------------------------------------------

def test_syscall_registers_round_trip(plat):
    space, ctx, st = guest(plat, SYSCALL2)
    r = st.regs
    for i, name in enumerate(GPRS):
        if name not in ("rax", "rsp"):
            setattr(r, name, 0x1111_0000_0000_0000 + i)
    r.rax, r.fs_base, r.gs_base = 39, 0x7000_1000, 0x7000_2000
    assert ctx.switch(space, st) == EventKind.SYSCALL
    assert (r.orig_rax, r.rax, r.rip, r.rcx) == (39, 39, CODE + 2, CODE + 2)
    assert r.rsp == STACK_TOP and (r.cs, r.ss) == (0x33, 0x2B)
    for i, name in enumerate(GPRS):
        if name not in ("rax", "rsp"):
            assert getattr(r, name) == 0x1111_0000_0000_0000 + i, name
    assert (r.fs_base, r.gs_base) == (0x7000_1000, 0x7000_2000)
    # The Sentry's edits reach the guest: every register, both bases.
    for i, name in enumerate(GPRS):
        setattr(r, name, 0x2222_0000_0000_0000 + i)
    r.rax, r.rsp, r.fs_base = 60, 0x4000, 0x7000_3000
    assert ctx.switch(space, st) == EventKind.SYSCALL
    assert (r.orig_rax, r.rip, r.rsp, r.fs_base) == (60, CODE + 4, 0x4000, 0x7000_3000)
    for name in GPRS:
        if name not in ("rax", "rsp"):
            assert getattr(r, name) == 0x2222_0000_0000_0000 + GPRS.index(name), name


def test_fs_base_is_live(plat):
    space, ctx, st = guest(plat, FS_READ, data=struct.pack("<QQ", 0, 0xFEEDFACE))
    st.regs.fs_base = DATA
    assert ctx.switch(space, st) == EventKind.SYSCALL
    assert st.regs.rbx == 0xFEEDFACE


def test_xsave_round_trip_and_survival(plat):
    space, ctx, st = guest(plat, XMM + SYSCALL2 * 4)
    st.fpstate[160:168] = struct.pack("<Q", 0xABCDEF0123456789)  # xmm0, low half
    st.fp_dirty = True
    assert ctx.switch(space, st) == EventKind.SYSCALL
    assert st.regs.rax == 0xABCDEF0123456789
    ctx.read_fpstate(st)
    assert st.fpstate[176:184] == struct.pack("<Q", 0x1122334455667788)  # xmm1 written by the guest
    first = bytes(st.fpstate)
    for _ in range(3):  # no FP in between: the state survives switches untouched
        assert ctx.switch(space, st) == EventKind.SYSCALL
    ctx.read_fpstate(st)
    assert bytes(st.fpstate) == first
    st.fp_dirty = True  # writing it back unchanged changes nothing
    assert ctx.switch(space, st) == EventKind.SYSCALL
    ctx.read_fpstate(st)
    assert bytes(st.fpstate) == first


def test_ymm_upper_half_reaches_guest(plat):
    if len(plat.new_arch_state().fpstate) < 576 + 256:
        pytest.skip("no AVX state in XSAVE")
    space, ctx, st = guest(plat, YMM)
    st.fpstate[512:520] = struct.pack("<Q", 0b111)  # XSTATE_BV: x87, SSE, AVX
    st.fpstate[576:584] = struct.pack("<Q", 0x0DDBA11CAFEF00D)  # YMM0 upper half, low qword
    st.fp_dirty = True
    assert ctx.switch(space, st) == EventKind.SYSCALL
    assert st.regs.rax == 0x0DDBA11CAFEF00D
    ctx.read_fpstate(st)
    assert st.fpstate[576:584] == struct.pack("<Q", 0x0DDBA11CAFEF00D)


def test_bad_fpstate_is_sanitized(plat):
    """Reserved MXCSR bits or a compacted header would make rt_sigreturn
    fail and kill the stub; the platform drops them instead."""
    space, ctx, st = guest(plat, SYSCALL2)
    st.fpstate[24:28] = struct.pack("<I", 0xFFFFFFFF)
    st.fpstate[520:528] = struct.pack("<Q", 1 << 63 | 3)
    st.fp_dirty = True
    assert ctx.switch(space, st) == EventKind.SYSCALL
    assert ctx.switch(space, st) == EventKind.SYSCALL


@pytest.mark.parametrize("code, signo, addr_off, access, trapno, rip_off", [
    (STORE, 11, None, PROT_WRITE, 14, 10),
    (LOAD, 11, 8, PROT_READ, 14, 10),
    (UD2, 4, 0, 0, 6, 0),
    (INT3, 5, None, 0, 3, 1),
    (DIV0, 8, 2, 0, 0, 2),
])
def test_faults(plat, code, signo, addr_off, access, trapno, rip_off):
    space, ctx, st = guest(plat, code)
    assert ctx.switch(space, st) == EventKind.SIGNAL
    info = ctx.signal_info
    assert (info.signo, info.access, info.trapno) == (signo, access, trapno)
    assert st.regs.rip == CODE + rip_off
    if signo == 11:
        assert info.addr == DATA + (addr_off or 0)
    elif addr_off is not None:
        assert info.addr == CODE + addr_off


def test_32_bit_code_segment_round_trips(plat):
    """A guest may far-jump to 32-bit code itself; the Sentry sees that in cs."""
    space, ctx, st = guest(plat, INT3)
    st.regs.cs = 0x23
    assert ctx.switch(space, st) == EventKind.SIGNAL and ctx.signal_info.signo == 5
    assert (st.regs.cs, st.regs.rip) == (0x23, CODE + 1)
    st.regs.cs = 0x10  # a kernel selector is never loaded
    st.regs.rip = CODE
    assert ctx.switch(space, st) == EventKind.SIGNAL
    assert st.regs.cs == 0x33


def test_bus_error_past_the_end_of_the_memory_file(plat):
    space, ctx, st = guest(plat, LOAD)
    space.map_file(DATA, plat.memory.capacity, PAGE, PROT_READ)
    assert ctx.switch(space, st) == EventKind.SIGNAL
    assert (ctx.signal_info.signo, ctx.signal_info.addr) == (7, DATA + 8)


def test_write_to_read_only_mapping(plat):
    off = plat.memory.allocate(PAGE)
    space, ctx, st = guest(plat, STORE + UD2)
    space.map_file(DATA, off, PAGE, PROT_READ)
    assert ctx.switch(space, st) == EventKind.SIGNAL
    assert (ctx.signal_info.signo, ctx.signal_info.code, ctx.signal_info.access) == (11, 2, PROT_WRITE)  # SEGV_ACCERR
    space.map_file(DATA, off, PAGE, PROT_READ | PROT_WRITE)  # the Sentry fixes it up; the store retries
    st.regs.rip = CODE
    assert ctx.switch(space, st) == EventKind.SIGNAL and ctx.signal_info.signo == 4  # the ud2 after it
    assert plat.memory.read(off, 8) == struct.pack("<Q", 1)


def test_exec_fault_and_unmap(plat):
    space, ctx, st = guest(plat, SYSCALL2)
    space.unmap(CODE, PAGE)
    assert ctx.switch(space, st) == EventKind.SIGNAL
    assert (ctx.signal_info.signo, ctx.signal_info.addr, ctx.signal_info.access) == (11, CODE, 4)


def test_interrupt(plat):
    space, ctx, st = guest(plat, LOOP)
    ctx.interrupt()  # before the switch: it returns at once, nothing ran
    assert ctx.switch(space, st) == EventKind.INTERRUPT
    assert st.regs.rip == CODE
    done = threading.Event()

    def poke():
        while not done.wait(0.01):
            ctx.interrupt()

    t = threading.Thread(target=poke)
    t.start()
    try:
        assert ctx.switch(space, st) == EventKind.INTERRUPT
    finally:
        done.set()
        t.join()
    assert st.regs.rip == CODE


# ---- many contexts, many address spaces ------------------------------------

def test_contexts_share_and_move_between_address_spaces(plat):
    space1, ctx1, st1 = guest(plat, XMM + SYSCALL2)
    ctx2, st2 = plat.new_context(), plat.new_arch_state()
    st2.regs.rip, st2.regs.rsp, st2.regs.rdi = CODE + len(XMM), STACK_TOP, 2
    st1.regs.rdi = 1
    assert ctx1.switch(space1, st1) == EventKind.SYSCALL
    assert ctx2.switch(space1, st2) == EventKind.SYSCALL
    assert (st1.regs.rdi, st2.regs.rdi) == (1, 2)
    # ctx1 moves to a new address space (execve); its FPU state comes along.
    space2, _, _ = guest(plat, SYSCALL2)
    st1.regs.rip = CODE
    assert ctx1.switch(space2, st1) == EventKind.SYSCALL
    ctx1.read_fpstate(st1)
    assert st1.fpstate[176:184] == struct.pack("<Q", 0x1122334455667788)
    space1.release()
    with pytest.raises(PlatformError):
        ctx2.switch(space1, st2)
    tasks = len(os.listdir(f"/proc/{space2.pid}/task"))
    ctx1.release()
    assert len(os.listdir(f"/proc/{space2.pid}/task")) == tasks - 1


def test_released_stub_is_recycled_clean(plat):
    space1, ctx1, st1 = guest(plat, SYSCALL2)
    assert ctx1.switch(space1, st1) == EventKind.SYSCALL
    pid = space1.pid
    space1.release()
    plat._spawner.submit(lambda: None).result()  # the recycling is done (one worker, FIFO)
    space2 = plat.new_address_space()
    assert space2.pid == pid  # the same process...
    assert sorted(os.listdir(f"/proc/{pid}/task")) == sorted([str(pid), str(space2.stub()._spare.c.tid)])
    ctx2, st2 = plat.new_context(), plat.new_arch_state()
    st2.regs.rip, st2.regs.rsp = CODE, STACK_TOP
    assert ctx2.switch(space2, st2) == EventKind.SIGNAL  # ...without the old mappings
    assert (ctx2.signal_info.signo, ctx2.signal_info.addr) == (11, CODE)
    with pytest.raises(PlatformError):
        ctx1.switch(space1, st1)


def test_process_vm_exec_contract(plat):
    """The RFC's interface: sigcontext in; sigcontext plus siginfo out."""
    space, ctx, _ = guest(plat, SYSCALL2)
    c = ffi.new("struct vmexec_context *")
    info = ffi.new("struct vmexec_siginfo *")
    fp = bytearray(plat.new_arch_state().fpstate)
    c.sc.rip, c.sc.rsp, c.sc.rax, c.sc.rbx = CODE, STACK_TOP, 39, 7
    c.sc.fpstate = int(ffi.cast("uintptr_t", ffi.from_buffer(fp)))
    assert vmexec.process_vm_exec(ctx, space, c, lib.VMEXEC_FPSTATE_IN | lib.VMEXEC_FPSTATE_OUT, info) == 0
    assert (info.signo, info.code, info.syscall_nr, info.addr) == (31, 1, 39, CODE + 2)  # SIGSYS, SYS_SECCOMP
    assert (c.sc.rip, c.sc.rbx, c.sc.rax) == (CODE + 2, 7, 39)
    assert fp[24:28] == struct.pack("<I", 0x1F80)  # MXCSR came back out


# ---- confinement -----------------------------------------------------------

def _trusted_syscall() -> int:
    """Address of the stub's own `syscall` in its restorer (`mov $15,%eax;
    syscall; ud2`): guest code that jumps there lands on ud2 afterwards."""
    import stub

    blob = open(stub.binary("stub-vmexec"), "rb").read()
    phoff, = struct.unpack_from("<Q", blob, 32)
    phnum, = struct.unpack_from("<H", blob, 56)
    for i in range(phnum):
        ptype, _, offset, vaddr = struct.unpack_from("<IIQQ", blob, phoff + 56 * i)
        if ptype == 1:
            at = blob.index(bytes.fromhex("b80f000000 0f05 0f0b"), offset)
            return vaddr + at - offset + 5
    raise AssertionError("no PT_LOAD")


@pytest.mark.parametrize("nr, args", [
    (257, (-100, 0x500000, 0, 0)),  # openat(AT_FDCWD, "/etc/passwd")
    (59, (0x500000, 0, 0)),  # execve("/etc/passwd")
    (101, (0, 0, 0, 0)),  # ptrace(PTRACE_TRACEME)
    (62, (1, 9)),  # kill(1, SIGKILL): the stub itself, pid 1 of its namespace
    (41, (2, 1, 0)),  # socket(AF_INET, SOCK_STREAM)
    (9, (0x600000, PAGE, 3, 0x11, 3, 0)),  # mmap(MAP_SHARED|MAP_FIXED, MemoryFile, 0)
    (56, (0x250F00, 0x401000, 0, 0, 0)),  # clone of a stub thread
    (202, (lib.VMEXEC_MBOX, 0, 0, 0)),  # futex(command page, FUTEX_WAIT): would fake "command done"
    (202, (lib.VMEXEC_MBOX + 4096, 1, 1, 0)),  # futex(result page, FUTEX_WAKE)
    (202, (SLOT0, 3, 1, 0, SLOT0 + 8)),  # FUTEX_REQUEUE
])
def test_jump_into_trusted_syscall_is_denied(plat, nr, args):
    space, ctx, st = guest(plat, SYSCALL2, data=b"/etc/passwd\0")
    assert ctx.switch(space, st) == EventKind.SYSCALL
    fds = os.listdir(f"/proc/{space.pid}/fd")
    tasks = os.listdir(f"/proc/{space.pid}/task")
    st.regs.rip, st.regs.rax = _trusted_syscall(), nr
    for reg, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
        setattr(st.regs, reg, value & (2**64 - 1))
    assert ctx.switch(space, st) == EventKind.SIGNAL  # the ud2 after the trusted syscall
    assert ctx.signal_info.signo == 4
    assert st.regs.rax == 2**64 - errno.EPERM
    assert os.listdir(f"/proc/{space.pid}/fd") == fds == ["3"]
    assert os.listdir(f"/proc/{space.pid}/task") == tasks
    assert os.readlink(f"/proc/{space.pid}/exe").endswith("stub-vmexec")
    st.regs.rip, st.regs.rax = CODE, 39  # and the stub still works
    assert ctx.switch(space, st) == EventKind.SYSCALL


def test_stub_is_confined(plat):
    space = plat.new_address_space()
    pid = space.pid
    assert os.listdir(f"/proc/{pid}/fd") == ["3"]
    for ns in ("user", "pid", "net", "mnt", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    status = open(f"/proc/{pid}/status").read()
    assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status
    maps = open(f"/proc/{pid}/maps").read()
    assert "[stack]" not in maps and "[vdso]" not in maps


def test_forged_results_do_not_fake_a_mapping(plat):
    """The result page is guest-writable: a guest that forges the answer to
    the next command (its seq, and the address mmap would return) must not
    make map_file return before the mapping exists."""
    poison = bytes.fromhex("48893e 48895608 0f05 488b1c25") + struct.pack("<I", DATA) + bytes.fromhex("0f05")
    # mov %rdi,(%rsi); mov %rdx,8(%rsi); syscall; mov DATA,%rbx; syscall
    space, ctx, st = guest(plat, poison)
    cmd = space.stub()._cmd
    for i in range(20):
        st.regs.rip, st.regs.rsi, st.regs.rdx, st.regs.rdi = CODE, lib.VMEXEC_MBOX + 4096, DATA, cmd.seq + 1
        assert ctx.switch(space, st) == EventKind.SYSCALL  # forged
        off = plat.memory.allocate(PAGE)
        plat.memory.write(off, struct.pack("<Q", 0x5EED + i))
        space.map_file(DATA, off, PAGE, PROT_READ)
        assert ctx.switch(space, st) == EventKind.SYSCALL  # mov DATA,%rbx
        assert st.regs.rbx == 0x5EED + i


def test_guest_that_blocks_the_interrupt_cannot_hang_the_sentry(plat):
    """A guest can block SIGURG with a forged rt_sigreturn through the
    stub's own syscall instruction, then spin: interrupt() must still end
    the switch (the platform kills that stub) instead of waiting forever."""
    sigcontext = struct.pack("<18Q", *[0] * 15, STACK_TOP, CODE, 0x202) + struct.pack("<4H", 0x33, 0, 0, 0x2B)
    sigcontext += bytes(5 * 8 + 64)  # err, trapno, oldmask, cr2, fpstate (none: FPU reset), reserved
    altstack = struct.pack("<QiiQ", SLOT0 + PAGE, 0, 0, lib.VMEXEC_SLOT_SIZE - PAGE)
    uc = struct.pack("<QQ", 0, 0) + altstack + sigcontext + struct.pack("<Q", 1 << (23 - 1))  # SIGURG blocked
    space, ctx, st = guest(plat, LOOP, data=uc)
    trusted = _trusted_syscall()
    st.regs.rip, st.regs.rax, st.regs.rsp = trusted, 15, DATA
    outcome: list = []

    def run():
        try:
            while True:
                outcome.append(ctx.switch(space, st))
                if st.regs.rip != trusted:  # else interrupted before the guest ran: again
                    return
        except PlatformError as e:
            outcome.append(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30  # a liveness bound, far above the ~1 s it takes
    while t.is_alive() and time.monotonic() < deadline:
        ctx.interrupt()
        t.join(0.05)
    hung = t.is_alive()
    if hung:  # do not leave the test hanging
        space.release()
    t.join()
    assert not hung, "switch ignored interrupt() for 30 s"
    assert isinstance(outcome[-1], PlatformError), outcome


def test_stubs_follow_the_sentry_cpu_set(plat):
    """The Sentry may narrow its CPUs (--cpus) after the platform spawned
    its reserve: a stub taken afterwards runs on the narrowed set."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        space = plat.new_address_space()
        tasks = os.listdir(f"/proc/{space.pid}/task")
        assert {tid: os.sched_getaffinity(int(tid)) for tid in tasks} == {tid: {min(cpus)} for tid in tasks}
    finally:
        os.sched_setaffinity(0, cpus)


def test_hostile_mailbox_is_an_error_not_a_crash(plat):
    space, ctx, st = guest(plat, CORRUPT)
    with pytest.raises(PlatformError):
        ctx.switch(space, st)


def test_close_leaves_no_stub(plat):
    space, ctx, st = guest(plat, SYSCALL2)
    assert ctx.switch(space, st) == EventKind.SYSCALL
    assert space.pid in stub_children()
    plat.close()
    assert space.pid not in stub_children()
    assert not os.path.exists(f"/proc/{space.pid}")


def test_no_stub_outlives_the_sentry():
    """SIGKILL the Sentry: every stub it had (in use or in reserve) dies."""
    ok, why = vmexec.VmexecPlatform.available()
    if not ok:
        pytest.skip(why)
    prog = (
        "import os, sys\n"
        "from sentry.mm.memfile import MemoryFile\n"
        "from platforms.vmexec import VmexecPlatform\n"
        "p = VmexecPlatform(MemoryFile(capacity=1 << 24))\n"
        "s = p.new_address_space()\n"
        "s.stub()\n"
        "p._spawner.submit(lambda: None).result()  # the reserve is up too\n"
        "pids = [c for t in os.listdir('/proc/self/task')\n"
        "        for c in open(f'/proc/self/task/{t}/children').read().split()]\n"
        "print(' '.join(pids), flush=True)\n"
        "sys.stdin.read()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sentry = subprocess.Popen([sys.executable, "-c", prog], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": root})
    pids = [int(p) for p in sentry.stdout.readline().split()]
    assert len(pids) >= 2
    fds = [os.pidfd_open(p) for p in pids]
    try:
        sentry.kill()
        sentry.wait()
        for pid, fd in zip(pids, fds):
            assert select.select([fd], [], [], 10)[0], f"stub {pid} outlived its Sentry"
    finally:
        for fd in fds:
            os.close(fd)
