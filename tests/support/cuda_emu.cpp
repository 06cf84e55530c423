/* tests/support/cuda_emu.cpp — the scheduler behind cuda_emu.h: runs a
 * launch's blocks one after another, each block's threads as ucontext
 * fibers on the calling OS thread, with __syncthreads as a real barrier
 * among them (see the header for the model and what is reported).
 *
 * Why fibers and not pthreads: one OS thread makes every run the same
 * (threads go in threadIdx order, switch only at barriers), a switch costs
 * a swapcontext instead of a futex round trip among 256 threads, and a
 * barrier that some thread never reaches is seen at once (everybody else
 * is waiting) instead of hanging. Under ASan every switch is announced with
 * __sanitizer_start/finish_switch_fiber, so ASan knows which stack is live.
 *
 * Why thread 0 decides: a block's thread 0 runs first, on a fiber. If it
 * finishes without reaching a barrier, no thread of a correct kernel may
 * reach one (CUDA wants every thread of the block at each __syncthreads),
 * so threads 1.. run as plain calls on the scheduler's stack, and a barrier
 * one of them does reach is reported as divergent. The element-wise kernels
 * then cost one fiber switch per block instead of one per thread. */
#include "support/cuda_emu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace kiln_emu
{
thread_local indices idx;
}

namespace
{

/* Per fiber: room for glibc's math, ASan's larger frames and a sanitizer
 * report (which symbolises on the fiber's stack), above a guard page. */
constexpr size_t STACK = 256 << 10;
constexpr unsigned MAX_THREADS = 1024;

enum fiber_state { F_RUN, F_WAIT, F_DONE };

struct fiber {
    ucontext_t ctx;
    char *stack; /* lowest usable byte, above the guard page */
    int ready;   /* guard page set in this launch */
    fiber_state st;
    const char *file; /* the barrier it waits at */
    int line;
    int pred; /* __syncthreads_count / _and / _or argument */
    uint3 tid;
#ifdef EMU_ASAN
    void *fake; /* ASan's fake stack while switched out */
#endif
};

struct launch_state {
    const char *name;
    void (*body)(void *);
    void *ctx;
    unsigned nthreads;
    fiber *f;
    char *region;
    size_t region_size, slot;
    unsigned cur;
    ucontext_t sched;
    bool direct; /* threads 1.. run as plain calls */
    bool failed;
    unsigned reduce_count; /* predicates set at the barrier just released */
#ifdef EMU_ASAN
    const void *sched_bottom;
    size_t sched_size;
    void *sched_fake;
#endif
};

thread_local launch_state *cur_launch;
thread_local cudaError_t last_error = cudaSuccess;
thread_local char last_message[640];
std::atomic<unsigned long> launches_total{0};
std::atomic<unsigned long long> threads_total{0};
std::atomic<int> verbose{1};

void set_error(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void set_error(cudaError_t e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    last_error = e;
    if (verbose.load())
        fprintf(stderr, "cuda_emu: %s\n", last_message);
}

void fail(launch_state *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A launch failure inside a block: the block stops, no later block runs. */
void fail(launch_state *r, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    const uint3 &b = kiln_emu::idx.block;
    set_error(cudaErrorLaunchFailure, "%s: block (%u,%u,%u): %s", r->name, b.x, b.y, b.z, why);
    r->failed = true;
}

uint3 thread_of(unsigned t, dim3 d)
{
    return uint3{t % d.x, t / d.x % d.y, t / (d.x * d.y)};
}

[[noreturn]] void host_barrier(const char *file, int line)
{
    fprintf(stderr, "cuda_emu: __syncthreads at %s:%d outside a kernel\n", file, line);
    abort();
}

/* Fiber side: back to the scheduler (for good when `exiting`). */
void to_scheduler(launch_state *r, fiber *f, bool exiting)
{
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &f->fake, r->sched_bottom, r->sched_size);
#else
    (void)exiting;
#endif
    swapcontext(&f->ctx, &r->sched);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake, &r->sched_bottom, &r->sched_size);
#endif
}

void fiber_entry()
{
    launch_state *r = cur_launch;
    fiber *f = &r->f[r->cur];
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &r->sched_bottom, &r->sched_size);
#endif
    r->body(r->ctx);
    f->st = F_DONE;
    to_scheduler(r, f, true);
    abort(); /* never resumed */
}

/* Scheduler side: (re)starts fiber t at the kernel's first line. */
bool start_fiber(launch_state *r, unsigned t)
{
    fiber *f = &r->f[t];
    if (!f->ready) {
        char *slot = r->region + (size_t)t * r->slot;
        if (mprotect(slot, r->slot - STACK, PROT_NONE) != 0) {
            fail(r, "mprotect of a fiber's guard page failed");
            return false;
        }
        f->stack = slot + (r->slot - STACK);
        f->ready = 1;
    }
    if (getcontext(&f->ctx) != 0) {
        fail(r, "getcontext failed");
        return false;
    }
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = STACK;
    f->ctx.uc_link = nullptr;
    makecontext(&f->ctx, fiber_entry, 0);
#ifdef EMU_ASAN
    f->fake = nullptr;
#endif
    return true;
}

void resume(launch_state *r, unsigned t)
{
    fiber *f = &r->f[t];
    r->cur = t;
    kiln_emu::idx.thread = f->tid;
    f->st = F_RUN;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(&r->sched_fake, f->stack, STACK);
#endif
    swapcontext(&r->sched, &f->ctx);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(r->sched_fake, nullptr, nullptr);
#endif
}

bool same_site(const fiber *a, const fiber *b)
{
    return a->line == b->line && (a->file == b->file || strcmp(a->file, b->file) == 0);
}

void run_block(launch_state *r, dim3 block)
{
    unsigned n = r->nthreads;
    for (unsigned t = 0; t < n; t++)
        r->f[t].tid = thread_of(t, block);
    if (!start_fiber(r, 0))
        return;
    resume(r, 0);
    threads_total += n;
    if (r->f[0].st == F_DONE) {
        r->direct = true;
        for (unsigned t = 1; t < n && !r->failed; t++) {
            r->cur = t;
            kiln_emu::idx.thread = r->f[t].tid;
            r->body(r->ctx);
        }
        r->direct = false;
        return;
    }
    for (unsigned t = 1; t < n; t++) {
        if (!start_fiber(r, t))
            return;
        resume(r, t);
    }
    for (;;) {
        const fiber *wait = nullptr, *done = nullptr, *other = nullptr;
        unsigned waiting = 0, preds = 0;
        for (unsigned t = 0; t < n; t++) {
            const fiber *f = &r->f[t];
            if (f->st == F_DONE) {
                done = done ? done : f;
                continue;
            }
            waiting++;
            preds += f->pred != 0;
            if (!wait)
                wait = f;
            else if (!other && !same_site(wait, f))
                other = f;
        }
        if (!waiting)
            return;
        if (done) {
            fail(r,
                 "divergent barrier: thread (%u,%u,%u) exited while %u threads wait at "
                 "__syncthreads (%s:%d)",
                 done->tid.x, done->tid.y, done->tid.z, waiting, wait->file, wait->line);
            return;
        }
        if (other) {
            fail(r,
                 "divergent barrier: thread (%u,%u,%u) waits at __syncthreads (%s:%d), thread "
                 "(%u,%u,%u) at another one (%s:%d)",
                 wait->tid.x, wait->tid.y, wait->tid.z, wait->file, wait->line, other->tid.x,
                 other->tid.y, other->tid.z, other->file, other->line);
            return;
        }
        r->reduce_count = preds;
        for (unsigned t = 0; t < n; t++)
            resume(r, t);
    }
}

/* Waits at a barrier; returns the number of threads whose predicate was set. */
unsigned barrier(const char *file, int line, int pred)
{
    launch_state *r = cur_launch;
    if (!r)
        host_barrier(file, line);
    fiber *f = &r->f[r->cur];
    if (r->direct) {
        const uint3 &t = kiln_emu::idx.thread;
        if (!r->failed)
            fail(r,
                 "divergent barrier: thread (%u,%u,%u) reached __syncthreads (%s:%d) after "
                 "thread (0,0,0) exited without one",
                 t.x, t.y, t.z, file, line);
        return pred != 0;
    }
    f->st = F_WAIT;
    f->file = file;
    f->line = line;
    f->pred = pred;
    to_scheduler(r, f, false);
    return r->reduce_count;
}

bool config_ok(const char *name, dim3 g, dim3 b, size_t shmem)
{
    unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (b.x < 1 || b.y < 1 || b.z < 1 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
        threads > MAX_THREADS || g.x < 1 || g.y < 1 || g.z < 1 || g.x > 0x7fffffffu ||
        g.y > 65535 || g.z > 65535) {
        set_error(cudaErrorInvalidConfiguration,
                  "%s: invalid configuration: grid (%u,%u,%u), block (%u,%u,%u)", name, g.x, g.y,
                  g.z, b.x, b.y, b.z);
        return false;
    }
    /* Dynamic shared memory cannot be reached here (no extern __shared__);
     * the GPU's default limit is still checked. */
    if (shmem > 48 << 10) {
        set_error(cudaErrorInvalidValue, "%s: %zu bytes of dynamic shared memory (limit 48 KiB)",
                  name, shmem);
        return false;
    }
    return true;
}

} // namespace

namespace kiln_emu
{

cudaError_t run(const char *name, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                void (*body)(void *ctx), void *ctx)
{
    (void)stream; /* synchronous: every stream is the default one */
    launches_total++;
    if (cur_launch) {
        set_error(cudaErrorNotSupported, "%s: launched from a kernel (not emulated)", name);
        return last_error;
    }
    if (!config_ok(name, grid, block, shmem))
        return last_error;
    launch_state r{};
    r.name = name;
    r.body = body;
    r.ctx = ctx;
    r.nthreads = block.x * block.y * block.z;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    r.slot = STACK + page;
    r.region_size = r.slot * r.nthreads;
    void *region = mmap(nullptr, r.region_size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    r.f = static_cast<fiber *>(calloc(r.nthreads, sizeof *r.f));
    if (region == MAP_FAILED || !r.f) {
        set_error(cudaErrorMemoryAllocation, "%s: no memory for %u fiber stacks", name, r.nthreads);
        if (region != MAP_FAILED)
            munmap(region, r.region_size);
        free(r.f);
        return last_error;
    }
    r.region = static_cast<char *>(region);
    cur_launch = &r;
    idx.block_dim = block;
    idx.grid_dim = grid;
    for (unsigned z = 0; z < grid.z && !r.failed; z++)
        for (unsigned y = 0; y < grid.y && !r.failed; y++)
            for (unsigned x = 0; x < grid.x && !r.failed; x++) {
                idx.block = uint3{x, y, z};
                run_block(&r, block);
            }
    cur_launch = nullptr;
#ifdef EMU_ASAN
    /* Fibers left at a barrier by a failure keep their frames' redzones
     * poisoned; the addresses may be handed out again after munmap. */
    __asan_unpoison_memory_region(r.region, r.region_size);
#endif
    munmap(r.region, r.region_size);
    free(r.f);
    return r.failed ? cudaErrorLaunchFailure : cudaSuccess;
}

void syncthreads(const char *file, int line)
{
    barrier(file, line, 0);
}

int syncthreads_reduce(const char *file, int line, int pred, int kind)
{
    unsigned n = barrier(file, line, pred);
    launch_state *r = cur_launch;
    if (r && r->direct)
        return (int)n; /* already reported as divergent */
    if (kind == 0)
        return (int)n;
    if (kind == 1)
        return r && n == r->nthreads;
    return n > 0;
}

/* Errors stay until read, as cudart's (a later good launch does not clear
 * them). */
cudaError_t get_last_error(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t peek_at_last_error(void)
{
    return last_error;
}

} // namespace kiln_emu

extern "C" unsigned long kiln_emu_launches(void)
{
    return launches_total.load();
}

extern "C" unsigned long long kiln_emu_threads_run(void)
{
    return threads_total.load();
}

extern "C" const char *kiln_emu_last_message(void)
{
    return last_message;
}

extern "C" void kiln_emu_set_verbose(int on)
{
    verbose.store(on != 0);
}
