//! Ctrl-C (SIGINT), SIGTERM and SIGHUP during `train`: the first asks the run to stop after
//! the current step, write a checkpoint it can resume from exactly, and exit with 128 + the
//! signal's number (130 for SIGINT, 143 for SIGTERM); a second one exits at once, with the
//! same convention. Nothing is corrupted either way: every file is written to a temporary
//! name and renamed, so a killed write leaves at most a hidden `.NAME.*.tmp`, which the next
//! run in that folder removes.
//!
//! The handler only touches an atomic and writes one fixed message (both async-signal-safe);
//! the training loop polls [`flag`] between steps.
use std::sync::atomic::{AtomicI32, Ordering};

/// The number of the first signal received; 0 while none was.
static REQUESTED: AtomicI32 = AtomicI32::new(0);

#[cfg(unix)]
pub const SIGHUP: i32 = libc::SIGHUP;
#[cfg(unix)]
pub const SIGINT: i32 = libc::SIGINT;
#[cfg(unix)]
pub const SIGTERM: i32 = libc::SIGTERM;
#[cfg(not(unix))]
pub const SIGHUP: i32 = 1;
#[cfg(not(unix))]
pub const SIGINT: i32 = 2;
#[cfg(not(unix))]
pub const SIGTERM: i32 = 15;

/// The flag the training loop polls: 0, or the number of the signal that asked it to stop.
pub fn flag() -> &'static AtomicI32 {
    &REQUESTED
}

/// `SIGINT`, `SIGTERM`, ... by number.
pub fn name(signal: i32) -> String {
    match signal {
        s if s == SIGINT => "SIGINT (Ctrl-C)".into(),
        s if s == SIGTERM => "SIGTERM".into(),
        s if s == SIGHUP => "SIGHUP".into(),
        s => format!("signal {s}"),
    }
}

/// The shell's convention: 128 + the signal's number.
pub fn exit_code(signal: i32) -> u8 {
    (128 + signal).clamp(1, 255) as u8
}

const FIRST: &[u8] =
    b"\nstopping after the current step to write a checkpoint (press Ctrl-C again to quit at once)\n";

/// Installs the handler. Call once, before training starts.
#[cfg(unix)]
pub fn install() -> std::io::Result<()> {
    extern "C" fn on_signal(signal: libc::c_int) {
        if REQUESTED
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // The second signal: leave now. `_exit` is async-signal-safe; whatever file was
            // being written is a temporary one.
            unsafe { libc::_exit(128 + signal) }
        }
        unsafe {
            libc::write(2, FIRST.as_ptr().cast(), FIRST.len());
        }
    }
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        // SAFETY: a zeroed sigaction with an empty mask and a handler that only uses
        // async-signal-safe operations.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(signal, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Installs the handler (Ctrl-C and console close, through `ctrlc`). Call once.
#[cfg(not(unix))]
pub fn install() -> std::io::Result<()> {
    ctrlc::set_handler(|| {
        if REQUESTED
            .compare_exchange(0, SIGINT, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            std::process::exit(exit_code(SIGINT) as i32);
        }
        eprint!("{}", String::from_utf8_lossy(FIRST));
    })
    .map_err(std::io::Error::other)
}
