//! Shared test helpers: the adapter under test, every adapter under every limit set, seeded
//! random data, tolerant comparison. Every test binary includes this file (`#[path]`).
#![allow(dead_code)]
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;
use wgsl_autoencoder::gpu::{
    describe_adapter, list_adapters, AdapterChoice, DeviceChoice, FoldChoice, FoldSet, Gpu,
    KernelChoice, KernelSet, LimitSet,
};

/// The adapter under test as the command line spells it: `WGSL_AE_TEST_ADAPTER`, default
/// `auto` (discrete, else integrated, else a CPU adapter; CI has only lavapipe).
pub fn adapter_name() -> String {
    std::env::var("WGSL_AE_TEST_ADAPTER").unwrap_or_else(|_| "auto".into())
}

/// [`adapter_name`] parsed.
pub fn adapter_choice() -> AdapterChoice {
    let name = adapter_name();
    name.parse()
        .unwrap_or_else(|e| panic!("WGSL_AE_TEST_ADAPTER={name:?}: {e}"))
}

/// The kernel set under test: `WGSL_AE_TEST_KERNELS` (auto, gpu or cpu), default `auto`.
pub fn kernel_choice() -> KernelChoice {
    let name = std::env::var("WGSL_AE_TEST_KERNELS").unwrap_or_else(|_| "auto".into());
    name.parse()
        .unwrap_or_else(|e| panic!("WGSL_AE_TEST_KERNELS={name:?}: {e}"))
}

/// The adapter and kernel set under test.
pub fn device_choice() -> DeviceChoice {
    DeviceChoice::new(adapter_choice(), kernel_choice())
}

/// The adapter under test, opened once per test binary with all the limits it allows (and the
/// workgroup memory's NaN fill: [`open_poisoned`]).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| open(&device_choice()))
}

/// The adapter under test with kernel set `set`, opened once per test binary and set.
pub fn gpu_with(set: KernelSet) -> &'static Gpu {
    static GPUS: [OnceLock<Gpu>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = KernelSet::ALL.iter().position(|s| *s == set).unwrap_or(0);
    GPUS[slot].get_or_init(|| open(&DeviceChoice::new(adapter_choice(), KernelChoice::Set(set))))
}

fn open(choice: &DeviceChoice) -> Gpu {
    let gpu = Gpu::new(choice)
        .map(Gpu::with_workgroup_poison)
        .unwrap_or_else(|e| panic!("a GPU adapter (install mesa-vulkan-drivers): {e}"));
    eprintln!("testing on {}, {} kernels", gpu.name(), gpu.kernels);
    gpu
}

/// Every configuration the op tests run on, and those that failed to open.
struct Configurations {
    /// (name, device, whether its kernel set is the one `auto` picks for its adapter)
    opened: Vec<(String, Gpu, bool)>,
    failed: Vec<String>,
}

/// A device opened for a test: [`Gpu::new`] with the NaN fill of workgroup memory before each
/// dispatch that skips zeroing it (`Gpu::with_workgroup_poison`), as every helper here opens
/// them.
pub fn open_poisoned(choice: &DeviceChoice) -> Gpu {
    Gpu::new(choice)
        .map(Gpu::with_workgroup_poison)
        .unwrap_or_else(|e| panic!("opening {choice:?}: {e}"))
}

/// [`open_poisoned`] on the adapter under test with kernel set `set` and exactly `folds`: a
/// variant device whose folds are another test's then builds that test's pipelines, which
/// Mesa's cache compiles once.
pub fn open_with_folds(set: KernelSet, folds: FoldSet) -> Gpu {
    let choice = DeviceChoice::new(adapter_choice(), KernelChoice::Set(set))
        .with_folds(FoldChoice::Set(folds));
    open_poisoned(&choice)
}

/// Opened once per test binary: every adapter `list_adapters` sees (only the one
/// `WGSL_AE_TEST_ADAPTER` names, when it is set), each with its own limits and with WebGPU's
/// defaults, each with both kernel sets. One that cannot open a device is recorded, not
/// skipped: [`each_gpu`] fails.
fn all_configurations() -> &'static Configurations {
    static ALL: OnceLock<Configurations> = OnceLock::new();
    ALL.get_or_init(|| {
        // (choice, prefix of the configuration's name, the adapter as a failure names it)
        let adapters: Vec<(AdapterChoice, String, String)> =
            match std::env::var("WGSL_AE_TEST_ADAPTER") {
                Ok(_) => vec![(
                    adapter_choice(),
                    String::new(),
                    format!("WGSL_AE_TEST_ADAPTER={}", adapter_name()),
                )],
                Err(_) => list_adapters()
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let prefix = format!("[{i}] ");
                        let label = format!("{prefix}{}", describe_adapter(&a.get_info()));
                        (AdapterChoice::Index(i), prefix, label)
                    })
                    .collect(),
            };
        let mut all = Configurations {
            opened: Vec::new(),
            failed: Vec::new(),
        };
        if adapters.is_empty() {
            all.failed
                .push("no adapter at all (install mesa-vulkan-drivers)".into());
        }
        for (choice, prefix, label) in adapters {
            for (set, set_name) in [
                (LimitSet::Adapter, "adapter limits"),
                (LimitSet::WebGpuDefaults, "WebGPU default limits"),
            ] {
                for kernels in KernelSet::ALL {
                    let device = DeviceChoice::new(choice.clone(), KernelChoice::Set(kernels));
                    match Gpu::with_limits(&device, set).map(Gpu::with_workgroup_poison) {
                        // The CPU set is shaped for lavapipe (Vulkan); through OpenGL its op
                        // tests held wgpu's GL context past its 6-s lock, failing the tests
                        // waiting for it. GL runs the set `auto` picks there (the GPU set).
                        Ok(g)
                            if g.info.backend == wgpu::Backend::Gl
                                && KernelSet::for_adapter(&g.info) != kernels => {}
                        Ok(g) => {
                            let name =
                                format!("{prefix}{} under {set_name}, {kernels} kernels", g.name());
                            eprintln!("configuration: {name}");
                            let auto = KernelSet::for_adapter(&g.info) == kernels;
                            all.opened.push((name, g, auto));
                        }
                        Err(e) => all
                            .failed
                            .push(format!("{label} under {set_name}, {kernels} kernels: {e}")),
                    }
                }
            }
        }
        all
    })
}

/// Runs `body` once per adapter and limit set (one test body per configuration, as wgpu's own
/// test harness), on the kernel set `auto` picks there, with the configuration's name for
/// assertion messages. For ops whose kernels are the same in both sets. Those that opened run
/// first; then the test fails if any configuration did not open.
pub fn each_gpu(body: impl FnMut(&Gpu, &str)) {
    each_configuration(true, body)
}

/// Runs one dispatch with the uniforms of its slot `slot` (staged and flushed), and waits: a
/// per-step dispatch as the second step of an execution would run it.
pub fn run_slot(g: &Gpu, d: &wgsl_autoencoder::gpu::Dispatch, slot: usize) {
    let mut enc = g.device.create_command_encoder(&Default::default());
    let launch = wgsl_autoencoder::gpu::SlotLaunch::at(d, slot);
    wgsl_autoencoder::gpu::record_passes(&mut enc, d.kernel, None, &[launch]);
    g.queue.submit([enc.finish()]);
    if let Err(e) = g.wait() {
        panic!("running {} at slot {slot}: {e}", d.kernel);
    }
}

/// [`each_gpu`] under both kernel sets (on Vulkan adapters; GL runs the set `auto` picks): for
/// the ops each set shapes its own way, so that neither set rots whichever one an adapter
/// picks.
pub fn each_kernel_set(body: impl FnMut(&Gpu, &str)) {
    each_configuration(false, body)
}

fn each_configuration(auto_only: bool, mut body: impl FnMut(&Gpu, &str)) {
    let all = all_configurations();
    for (name, g, auto) in &all.opened {
        if *auto || !auto_only {
            body(g, name);
        }
    }
    assert!(
        all.failed.is_empty(),
        "configurations that did not open:\n{}",
        all.failed.join("\n")
    );
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut ChaCha8Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Fails on any NaN (an element the kernel left unwritten keeps its NaN poison) or on
/// `max |got - want| > tol * max(1, max |want|)`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs() as f64));
    let mut worst = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite(),
            "{what}: element {i} is {g} (want {w}): unwritten or overflow"
        );
        let e = (*g as f64 - *w as f64).abs();
        if e > worst.0 {
            worst = (e, i);
        }
    }
    let (e, i) = worst;
    assert!(
        e <= tol * scale,
        "{what}: element {i} is {} but the reference says {} (error {e:.3e} > {tol:e} x scale {scale:.3e})",
        got[i],
        want[i]
    );
}

/// `unwrap` whose panic names the case (configuration, shape): a launcher's refusal or a GPU
/// error must say where it happened.
pub trait OrFail<T> {
    fn or_fail(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    #[track_caller]
    fn or_fail(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e}"),
        }
    }
}
