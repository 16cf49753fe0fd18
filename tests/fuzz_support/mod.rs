//! Shared by the fuzz tests: an allocator that records the largest single allocation made
//! by the current thread (to show a reader never sizes a buffer from a header's promise
//! alone), seeded proptest settings with a bounded case count, and the regression corpus.
#![allow(dead_code)]
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

pub struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size)
        }
    });
}

// SAFETY: forwards to the system allocator; only records sizes in a const-initialised
// thread-local (which never allocates).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it made (this thread).
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(|l| l.get()))
}

/// Proptest settings: `cases` cases (or `PROPTEST_CASES` when set, to fuzz longer), a fixed
/// seed (or `PROPTEST_RNG_SEED`), failures persisted under tests/regressions/proptest/, and
/// shrinking bounded in time so a failure cannot stall CI.
pub fn config(cases: u32, seed: u64, name: &'static str) -> Config {
    let d = Config::default();
    let persisted: &'static str =
        Box::leak(format!("tests/regressions/proptest/{name}.txt").into_boxed_str());
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        rng_seed: match d.rng_seed {
            RngSeed::Random => RngSeed::Fixed(seed),
            s => s,
        },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(persisted))),
        max_shrink_time: 10_000,
        ..d
    }
}

/// The committed corpus of one reader: `tests/regressions/<kind>/*`, sorted.
pub fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .filter(|(name, _)| !name.starts_with('.') && !name.ends_with(".md"))
        .collect();
    out.sort();
    out
}

/// One change to a file.
#[derive(Clone, Debug)]
pub enum Mutation {
    Xor(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Xor(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Applies `ms` to a copy of `base`: even position indexes land in the first `header` bytes
/// (where a format's structure is), odd ones anywhere.
pub fn mutate(base: &[u8], ms: &[Mutation], header: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    let at = |i: usize, len: usize| {
        if len == 0 {
            0
        } else if i.is_multiple_of(2) {
            (i / 2) % header.min(len).max(1)
        } else {
            (i / 2) % len
        }
    };
    for m in ms {
        match *m {
            Mutation::Xor(i, x) if !b.is_empty() => {
                let i = at(i, b.len());
                b[i] ^= x
            }
            Mutation::Set(i, x) if !b.is_empty() => {
                let i = at(i, b.len());
                b[i] = x
            }
            Mutation::Insert(i, x) => {
                let i = at(i, b.len() + 1).min(b.len());
                b.insert(i, x)
            }
            Mutation::Remove(i) if !b.is_empty() => {
                let i = at(i, b.len());
                b.remove(i);
            }
            Mutation::Truncate(i) => {
                let i = at(i, b.len() + 1);
                b.truncate(i)
            }
            _ => {}
        }
    }
    b
}
