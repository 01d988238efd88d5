//! `allocator::keep_freed_memory`: large blocks come from the heap and stay there once freed,
//! instead of being mapped and unmapped (page faults on every model run).
//!
//! Without the test harness (`harness = false` in Cargo.toml): glibc reports the heap's top chunk
//! (`keepcost`) for the main thread's arena only, so this runs on the main thread.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    use image_predict::allocator::keep_freed_memory;

    /// Bytes in blocks that glibc mapped on their own, and the free space at the heap's top.
    fn mapped_and_top() -> (usize, usize) {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        (info.hblkhd, info.keepcost)
    }
    const MIB: usize = 1 << 20;

    // glibc's defaults first: a fresh 8 MiB block is mapped on its own, so that the control
    // below is a real one.
    let (mapped, _) = mapped_and_top();
    let block = std::hint::black_box(vec![1u8; 8 * MIB]);
    assert!(
        mapped_and_top().0 >= mapped + 8 * MIB,
        "by default a large block is mapped on its own"
    );
    drop(block);

    assert!(keep_freed_memory(), "mallopt accepted both settings");
    // 16 MiB: above the threshold glibc would have raised itself to after freeing 8 MiB.
    let (mapped, _) = mapped_and_top();
    let block = std::hint::black_box(vec![1u8; 16 * MIB]);
    assert!(
        mapped_and_top().0 < mapped + 16 * MIB,
        "a 16 MiB block comes from the heap"
    );
    drop(block);
    let (_, top) = mapped_and_top();
    assert!(
        top >= 16 * MIB,
        "freed, it stays at the heap's top for the next run ({top} bytes kept)"
    );
    println!("allocator: ok");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    assert!(!image_predict::allocator::keep_freed_memory());
}
