"""A sequential CUDA emulator for testing generated CUDA C without a GPU.

The CUDA C is compiled as C++ by g++ over ``EMULATION_HEADER``: each thread of a block is
a ucontext fiber, and ``__syncthreads`` and warp shuffles are barriers that switch fibers
(a thread or lane that never arrives is reported as a deadlock instead of hanging).
``Emulator(sources, entries, workdir).launch(entry, grid, block, pointers)`` runs one
launch over host memory; it returns 0, or 1 for a bad launch, 2 for a bad shuffle mask,
3 for a deadlock. Used by test_cuda_codegen.py (kernel by kernel) and by cupy_standin.py
(whole programs).
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile

EMULATION_HEADER = r"""
// Sequential CUDA emulation: each thread of a block is a ucontext fiber; __syncthreads
// and warp shuffles are barriers that switch fibers (and report a deadlock when some
// thread of the block, or lane of the warp, never arrives).
#include <ucontext.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
using std::signbit;

struct emu_dim3 { unsigned x, y, z; };
static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

// CUDA's built-in vector types (vector_types.h), each aligned to its size as there.
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) longlong2 { long long x, y; };
struct alignas(2) uchar2 { unsigned char x, y; };
struct alignas(4) uchar4 { unsigned char x, y, z, w; };

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }

namespace emu {
const size_t STACK = 256 * 1024;
struct Fiber {
    ucontext_t ctx;
    char* stack = nullptr;
    bool done = false;
    const unsigned long long* wait = nullptr;   // blocked while *wait == wait_gen
    unsigned long long wait_gen = 0;
};
struct Warp { unsigned long long gen = 0; unsigned count = 0; unsigned char slot[32][8]; };
static ucontext_t sched;
static std::vector<Fiber> fibers;
static std::vector<Warp> warps;
static unsigned current;
static std::function<void()> body;
static unsigned long long bar_gen;
static unsigned bar_count;
static int error;
// Which runnable thread goes next: 0 round-robin; 1 the lowest-numbered, 2 the highest
// (these two let one warp run as far ahead of the others as the barriers allow, so a
// missing barrier shows up as a wrong value).
static int policy;

inline void yield() { swapcontext(&fibers[current].ctx, &sched); }
inline void fail(int code) { error = code; for (;;) yield(); }
inline void entry() { body(); fibers[current].done = true; }
inline bool runnable(const Fiber& f) { return !f.done && !(f.wait && *f.wait == f.wait_gen); }

inline void wait_on(unsigned long long* gen_counter, unsigned* count, unsigned n) {
    unsigned long long gen = *gen_counter;
    if (++*count == n) { *count = 0; ++*gen_counter; return; }
    fibers[current].wait = gen_counter;
    fibers[current].wait_gen = gen;
    yield();
    fibers[current].wait = nullptr;
}
inline void block_barrier() { wait_on(&bar_gen, &bar_count, blockDim.x); }

// 0 ok, 1 bad launch, 2 bad shuffle mask, 3 deadlock
inline int launch(unsigned grid, unsigned block, std::function<void()> f) {
    if (block == 0 || block % 32 || block > 1024 || grid == 0) return 1;
    body = std::move(f);
    error = 0;
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    if (fibers.size() < block) fibers.resize(block);
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx = {b, 0, 0};
        bar_gen = 0;
        bar_count = 0;
        warps.assign(block / 32, Warp());
        for (unsigned t = 0; t < block; ++t) {
            Fiber& fb = fibers[t];
            if (!fb.stack) fb.stack = static_cast<char*>(std::malloc(STACK));
            getcontext(&fb.ctx);
            fb.ctx.uc_stack.ss_sp = fb.stack;
            fb.ctx.uc_stack.ss_size = STACK;
            fb.ctx.uc_link = &sched;
            makecontext(&fb.ctx, entry, 0);
            fb.done = false;
            fb.wait = nullptr;
        }
        unsigned live = block, next = 0;
        while (live) {
            int t = -1;
            for (unsigned i = 0; i < block && t < 0; ++i) {
                unsigned c = policy == 1 ? i : policy == 2 ? block - 1 - i : (next + i) % block;
                if (runnable(fibers[c])) t = (int)c;
            }
            if (t < 0) return 3;   // live threads, all waiting at barriers
            next = (t + 1) % block;
            current = t;
            threadIdx = {(unsigned)t, 0, 0};
            swapcontext(&sched, &fibers[t].ctx);
            if (error) return 2;
            if (fibers[t].done) --live;
        }
    }
    return 0;
}

// Calls an entry point with its arguments from an array of pointers: a pointer
// parameter takes the pointer itself, a scalar parameter the value pointed to.
template <class T> T arg(void* p) {
    if constexpr (std::is_pointer<T>::value) return reinterpret_cast<T>(p);
    else return *reinterpret_cast<std::remove_cv_t<T>*>(p);
}
template <class... P, size_t... I>
void call(void (*f)(P...), void** a, std::index_sequence<I...>) { f(arg<P>(a[I])...); }
template <class... P> int run(void (*f)(P...), unsigned grid, unsigned block, void** a) {
    return launch(grid, block, [=] { call(f, a, std::index_sequence_for<P...>{}); });
}
}  // namespace emu

inline void __syncthreads() { emu::block_barrier(); }
extern "C" void emu_set_policy(int p) { emu::policy = p; }
template <class T> T __shfl_xor_sync(unsigned mask, T v, int m) {
    if (mask != 0xffffffffu) emu::fail(2);
    emu::Warp& w = emu::warps[threadIdx.x / 32];
    unsigned lane = threadIdx.x % 32;
    std::memcpy(w.slot[lane], &v, sizeof(T));
    emu::wait_on(&w.gen, &w.count, 32);
    T r;
    std::memcpy(&r, w.slot[lane ^ m], sizeof(T));
    emu::wait_on(&w.gen, &w.count, 32);   // all read before the slots are reused
    return r;
}
"""


class Emulator:
    """A shared library of CUDA sources compiled by g++ over ``EMULATION_HEADER``."""

    def __init__(self, sources: list[str], entries: list[str], workdir: str) -> None:
        fd, path = tempfile.mkstemp(suffix=".cc", dir=workdir)
        os.close(fd)
        wrappers = [f'extern "C" int emu_{e}(unsigned g, unsigned b, void** a) '
                    f"{{ return emu::run({e}, g, b, a); }}" for e in entries]
        with open(path, "w") as fh:
            fh.write("\n".join([EMULATION_HEADER, *sources, *wrappers]) + "\n")
        lib = path[:-3] + ".so"
        proc = subprocess.run(["g++", "-std=c++17", "-O1", "-w", "-shared", "-fPIC", "-x", "c++",
                               path, "-o", lib], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError("g++ failed on the emulated CUDA source:\n" + proc.stderr[-5000:])
        self.lib = ctypes.CDLL(lib)

    def launch(self, entry: str, grid: int, block: int, pointers: list[int]) -> int:
        fn = getattr(self.lib, "emu_" + entry)
        fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
        args = (ctypes.c_void_p * max(len(pointers), 1))(*pointers)
        return fn(grid, block, args)
