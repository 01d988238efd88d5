//! How the C allocator treats the megabytes the models allocate and free on every run.
//!
//! tract allocates each intermediate tensor of a run (up to a few MiB for the detector) and
//! frees it when the run ends. With glibc's defaults, allocations above a sliding threshold are
//! fresh `mmap`s, and every free that leaves a thread arena's top chunk large gets trimmed back
//! to the kernel with `madvise`; the next run then page-faults all of it in again, zeroed.
//! Under load that was 8 of 39 CPU seconds in the kernel and about 20 % of the throughput
//! (BENCHMARKS.md). Two `mallopt` calls keep freed memory for reuse instead. Other allocators
//! were tried: jemalloc (tikv-jemallocator, default options) purged its large extents on free
//! and kept the same kernel time.
//!
//! Memory kept is memory held: glibc gives each thread that allocates concurrently an arena of
//! its own (up to 8 per core), and each arena now keeps its peak. The stack under the HTTP load
//! then three dense photos at once peaked at 1.69 GB against 1.07 GB before; with one arena per
//! core, 0.75 GB at the same throughput (BENCHMARKS.md). Tract allocates per operator, not per
//! element, so threads sharing an arena rarely wait for its lock.

/// Allocations up to this size come from the arenas, so their pages are reused run after run.
/// glibc's own ceiling for the threshold (larger values are refused).
const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// An arena gives memory back to the kernel only when more than this is free at its top: the
/// detector's intermediates of one run (tens of MiB per worker) stay mapped between runs.
const TRIM_THRESHOLD_BYTES: i32 = 256 << 20;

/// Applies the settings above, with one arena per core. Call it first thing in `main`, before
/// the inference threads start. Elsewhere than glibc, a no-op that returns `false`.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = i32::try_from(cores).unwrap_or(i32::MAX);
        // SAFETY: mallopt only changes the allocator's parameters under its own lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
