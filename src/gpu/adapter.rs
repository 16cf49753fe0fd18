//! Choosing an adapter at run time: `auto`, `discrete`, `integrated`, `cpu`, an index from
//! `devices`, or a substring of the adapter's name.
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    /// Discrete, else integrated, else a CPU adapter, else whatever exists.
    #[default]
    Auto,
    Discrete,
    Integrated,
    Cpu,
    Index(usize),
    Name(String),
}

impl FromStr for AdapterChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        Ok(match s.to_ascii_lowercase().as_str() {
            "" => return Err("empty adapter choice".into()),
            "auto" => Self::Auto,
            "discrete" => Self::Discrete,
            "integrated" => Self::Integrated,
            "cpu" => Self::Cpu,
            other => match other.parse::<usize>() {
                Ok(i) => Self::Index(i),
                Err(_) => Self::Name(s.to_string()),
            },
        })
    }
}

impl fmt::Display for AdapterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Discrete => write!(f, "discrete"),
            Self::Integrated => write!(f, "integrated"),
            Self::Cpu => write!(f, "cpu"),
            Self::Index(i) => write!(f, "{i}"),
            Self::Name(n) => write!(f, "{n}"),
        }
    }
}

pub(crate) fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    // Validation layers stay off: they are slow and print to stderr.
    desc.flags = wgpu::InstanceFlags::empty();
    if cfg!(feature = "noop-adapter") {
        // The measurement build's extra adapter (Cargo.toml), with WebGPU's default limits.
        // wgpu 30 reports it as a CPU adapter, so `auto` gives it what lavapipe gets (one
        // step per submit, CPU-adapter folds): name both to time what a GPU would run.
        desc.backends |= wgpu::Backends::NOOP;
        desc.backend_options.noop = wgpu::NoopBackendOptions {
            enable: true,
            limits: Some(wgpu::Limits::default()),
            ..Default::default()
        };
    }
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu can see, in a stable order (the index `--adapter N` uses).
pub fn list_adapters() -> Vec<wgpu::Adapter> {
    let instance = instance();
    let mut all = without_egl_noise(|| {
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
    });
    // Stable order: by backend preference, then name.
    all.sort_by_key(|a| {
        let i = a.get_info();
        (backend_rank(i.backend), i.name.clone(), i.device)
    });
    all
}

/// Runs `f` (the adapter probe) with stderr silenced when XDG_RUNTIME_DIR is unset or not a
/// folder: Mesa's EGL, probed for the GL backend, then prints "error: XDG_RUNTIME_DIR is
/// invalid or not set" twice, which reads as our own error though nothing failed.
fn without_egl_noise<T>(f: impl FnOnce() -> T) -> T {
    let xdg_ok =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if xdg_ok {
        return f();
    }
    // fd 2 is the process's: one silencer at a time, restored even if `f` panics.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock();
    let _quiet = QuietStderr::new();
    f()
}

/// Points fd 2 at /dev/null until dropped (unix; elsewhere nothing).
struct QuietStderr {
    #[cfg(unix)]
    saved: Option<libc::c_int>,
}

impl QuietStderr {
    fn new() -> Self {
        #[cfg(unix)]
        {
            // SAFETY: plain descriptor calls on descriptors this function owns; fd 2 is only
            // replaced once its duplicate is safe, and `drop` puts it back.
            unsafe {
                let saved = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                let swapped = saved >= 0 && null >= 0 && libc::dup2(null, 2) >= 0;
                if null >= 0 {
                    libc::close(null);
                }
                if !swapped && saved >= 0 {
                    libc::close(saved);
                }
                QuietStderr {
                    saved: swapped.then_some(saved),
                }
            }
        }
        #[cfg(not(unix))]
        QuietStderr {}
    }
}

impl Drop for QuietStderr {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = self.saved {
            // SAFETY: `saved` is our duplicate of the original fd 2.
            unsafe {
                libc::dup2(saved, 2);
                libc::close(saved);
            }
        }
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    }
}

pub fn describe_adapter(i: &wgpu::AdapterInfo) -> String {
    let driver = if i.driver_info.is_empty() {
        i.driver.clone()
    } else {
        format!("{} {}", i.driver, i.driver_info)
    };
    format!(
        "{} ({:?}, {:?}, driver: {})",
        i.name,
        i.device_type,
        i.backend,
        driver.trim()
    )
}

pub(crate) fn choose(choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    use wgpu::DeviceType as T;
    let all = list_adapters();
    let of_type = |t: T| all.iter().find(|a| a.get_info().device_type == t).cloned();
    let found = match choice {
        AdapterChoice::Auto => of_type(T::DiscreteGpu)
            .or_else(|| of_type(T::IntegratedGpu))
            .or_else(|| of_type(T::Cpu))
            .or_else(|| all.first().cloned()),
        AdapterChoice::Discrete => of_type(T::DiscreteGpu),
        AdapterChoice::Integrated => of_type(T::IntegratedGpu),
        AdapterChoice::Cpu => of_type(T::Cpu),
        AdapterChoice::Index(i) => all.get(*i).cloned(),
        AdapterChoice::Name(n) => {
            let n = n.to_ascii_lowercase();
            all.iter()
                .find(|a| a.get_info().name.to_ascii_lowercase().contains(&n))
                .cloned()
        }
    };
    found.ok_or_else(|| {
        let seen = if all.is_empty() {
            "  (none: no Vulkan, Metal, DX12 or GL driver was found; on Linux install Mesa's \
             lavapipe: apt-get install mesa-vulkan-drivers)"
                .to_string()
        } else {
            all.iter()
                .enumerate()
                .map(|(k, a)| format!("  [{k}] {}", describe_adapter(&a.get_info())))
                .collect::<Vec<_>>()
                .join("\n")
        };
        Error::NoAdapter {
            choice: choice.to_string(),
            seen,
        }
    })
}
