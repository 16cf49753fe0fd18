//! `--steps-per-execution`: how many training steps (or evaluation batches) go into one
//! command buffer and one submit, as Keras' `compile(steps_per_execution=...)` and a jitted
//! `lax.scan` over steps do. Each step keeps its own uniforms in a slot of its own
//! ([`super::Dispatch::with_slots`]), so the value changes no result, only how often the host
//! and the driver are involved.
use std::fmt;
use std::str::FromStr;

/// Steps per execution where `auto` applies on a GPU: enough that a submit's host and driver
/// cost (tens of µs in wgpu) is spread thin next to a dense step's ~50 µs, few enough that the
/// progress bar and Ctrl-C still answer within a fraction of a second (they wait for up to
/// two executions). The running loss is read at the end of an execution, every 16 steps at
/// most.
pub const AUTO_ON_GPU: usize = 16;

/// The most `--steps-per-execution` takes: each step needs a uniform slot per per-step
/// dispatch (the adapter's uniform offset alignment apart, at most 256 bytes), and past a few
/// dozen steps a submit costs nothing more.
pub const MAX: usize = 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepsPerExecution {
    /// `AUTO_ON_GPU` on a GPU; 1 on a CPU adapter, where a submit runs the work before it
    /// returns (lavapipe), so a longer execution saves nothing and delays the progress bar and
    /// Ctrl-C by that many steps.
    #[default]
    Auto,
    Set(usize),
}

impl StepsPerExecution {
    /// The value on an adapter of type `device`.
    pub fn resolve(self, device: wgpu::DeviceType) -> usize {
        match self {
            StepsPerExecution::Auto if device == wgpu::DeviceType::Cpu => 1,
            StepsPerExecution::Auto => AUTO_ON_GPU,
            StepsPerExecution::Set(n) => n,
        }
    }
}

impl FromStr for StepsPerExecution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(StepsPerExecution::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if (1..=MAX).contains(&n) => Ok(StepsPerExecution::Set(n)),
            Ok(n) => Err(format!(
                "{n} steps per execution: use auto or a number from 1 to {MAX}"
            )),
            Err(_) => Err(format!(
                "'{s}' is not a number of steps: use auto or a number from 1 to {MAX}"
            )),
        }
    }
}

impl fmt::Display for StepsPerExecution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepsPerExecution::Auto => f.write_str("auto"),
            StepsPerExecution::Set(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auto_and_counts_in_range_only() {
        assert_eq!("auto".parse(), Ok(StepsPerExecution::Auto));
        assert_eq!(" 16 ".parse(), Ok(StepsPerExecution::Set(16)));
        assert_eq!("1".parse(), Ok(StepsPerExecution::Set(1)));
        assert_eq!("1024".parse(), Ok(StepsPerExecution::Set(MAX)));
        for bad in ["0", "1025", "-3", "many", ""] {
            let e = bad.parse::<StepsPerExecution>().unwrap_err();
            assert!(e.contains("from 1 to 1024"), "{bad}: {e}");
        }
    }

    #[test]
    fn auto_is_one_on_a_cpu_adapter_only() {
        let cpu = wgpu::DeviceType::Cpu;
        assert_eq!(StepsPerExecution::Auto.resolve(cpu), 1);
        assert_eq!(StepsPerExecution::Set(4).resolve(cpu), 4);
        let gpu = wgpu::DeviceType::DiscreteGpu;
        assert_eq!(StepsPerExecution::Auto.resolve(gpu), AUTO_ON_GPU);
        assert_eq!(StepsPerExecution::Set(4).resolve(gpu), 4);
    }
}
