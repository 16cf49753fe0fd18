//! Choosing an adapter at run time: `auto`, `discrete`, `integrated`, `cpu`, an index from
//! `devices`, or a substring of the adapter's name.
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdapterChoice {
    /// Discrete, else integrated, else a CPU adapter, else whatever exists.
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
    #[cfg(unix)]
    {
        // SAFETY: plain descriptor calls; fd 2 is restored from its duplicate before
        // returning, and a failed dup leaves stderr as it was.
        unsafe {
            let saved = libc::dup(2);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if saved >= 0 && null >= 0 {
                libc::dup2(null, 2);
                let out = f();
                libc::dup2(saved, 2);
                libc::close(null);
                libc::close(saved);
                return out;
            }
            if saved >= 0 {
                libc::close(saved);
            }
            if null >= 0 {
                libc::close(null);
            }
        }
    }
    f()
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

pub(crate) fn choose(_instance: &wgpu::Instance, choice: &AdapterChoice) -> Result<wgpu::Adapter> {
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
