//! Kernel sets: the same ops shaped for two kinds of device. The GPU set spreads work over
//! many small invocations; the CPU set is shaped for CPU adapters such as Mesa's lavapipe,
//! which run 8 invocations per AVX2 vector and pay a guarded scalar load per lane for every
//! load whose address is not a constant. Both compute the same sums, to float rounding.
use super::adapter::AdapterChoice;
use std::fmt;
use std::str::FromStr;

/// The kernel set a device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelSet {
    /// Shaped for GPUs: one output pixel or a 4x4 block per invocation, split sums.
    Gpu,
    /// Shaped for CPU adapters: window taps written out, several outputs per loaded value,
    /// no split sums for short reductions.
    Cpu,
}

impl KernelSet {
    pub const ALL: [KernelSet; 2] = [KernelSet::Gpu, KernelSet::Cpu];

    pub fn name(self) -> &'static str {
        match self {
            KernelSet::Gpu => "gpu",
            KernelSet::Cpu => "cpu",
        }
    }

    /// The set `auto` picks: the CPU set on a CPU adapter through Vulkan (lavapipe, what it
    /// was shaped and measured on), the GPU set elsewhere. llvmpipe through OpenGL keeps the
    /// GPU set: the CPU set's written-out kernels were neither measured nor tuned there.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        match (info.device_type, info.backend) {
            (wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan) => KernelSet::Cpu,
            _ => KernelSet::Gpu,
        }
    }
}

impl fmt::Display for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--kernels`: a set, or `auto` (chosen by the adapter: [`KernelSet::for_adapter`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChoice {
    #[default]
    Auto,
    Set(KernelSet),
}

impl KernelChoice {
    pub fn resolve(self, info: &wgpu::AdapterInfo) -> KernelSet {
        match self {
            KernelChoice::Auto => KernelSet::for_adapter(info),
            KernelChoice::Set(set) => set,
        }
    }
}

impl FromStr for KernelChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(KernelChoice::Auto),
            "gpu" => Ok(KernelChoice::Set(KernelSet::Gpu)),
            "cpu" => Ok(KernelChoice::Set(KernelSet::Cpu)),
            other => Err(format!(
                "unknown kernel set '{other}': use auto, gpu or cpu"
            )),
        }
    }
}

impl fmt::Display for KernelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelChoice::Auto => f.write_str("auto"),
            KernelChoice::Set(set) => set.fmt(f),
        }
    }
}

/// What the GPU set's convolutions take over from the dispatches around them
/// (`ops::conv2d::Folds`, `network`): a 2x upsampling before a convolution (`upsample`), a 2x2
/// max pool after it (`pool`), every convolution's weight-gradient reduce as one dispatch
/// after the backward pass (`reduces`), each convolution's weight-gradient partial sums and
/// input gradient as one dispatch (`backward`), and the loss's gradient written by the loss
/// pass (`loss`, every model), the loss's last sum in Adam's dispatch (`finish`, every model),
/// a dense model's whole forward pass, logits' gradient and input gradients as one dispatch
/// over the batch's rows (`rows`), and with it every dense layer's weight gradient and the
/// loss's partial sums as one more (`grads`), the batch gathered from the dataset by that
/// dispatch, or by the forward pass of a first convolution with 'same' padding, rather than
/// by one of its own (`gather`, inputs without noise), and Adam's
/// step taken where the weight gradients are summed (`adam`): with `grads`, in that dispatch,
/// the losses of an execution's steps finished by one dispatch after its last (where the
/// device binds 11 storage buffers per stage); with `reduces` on a model whose weights are
/// all convolutions', in the merged reduce, with the loss's finish. Five more are
/// kernel variants rather than folds, selected the same way: the weight-gradient partials
/// staging each workgroup's gradient once (`tiles`), the dense split-K kernels loading 4
/// features at once and the convolutions 4 channels at once in the forward pass, input
/// gradient and weight-gradient partials (`vec4`), the
/// convolutions keeping 4 channels per invocation instead of 16 (`narrow`),
/// `dense.rows` taking one sample per workgroup instead of two (`single`), and a folded pool's
/// or upsampling's 2x2 window spread over four invocations instead of one (`quads`). On the GPU set
/// every result is the same to the bit either way, only the dispatches differ; on the CPU set
/// a fold runs the GPU set's kernels for the layers it joins (the same sums, to float
/// rounding), but for `loss`, which has a CPU-set kernel of its own (the same bits), and the
/// pools the CPU set's kernels take. Four are the CPU set's own: its dense products reading the operand that fits in
/// 64 KiB uniform windows through them (the forward pass's kernel in two, the others' in
/// one: `windows`: the same bits; tensor buffers get
/// uniform usage and a window's room after them), its convolutions reading the forward
/// pass's input and the input gradient's upstream gradient (and ReLU mask; not under `lanes`) through textures
/// that each op's first dispatch copies them into (`textures`: the same bits; `gpu::TensorTexture`),
/// and its convolutions loading each pixel once for every tap that reads it where they
/// loaded it per tap (`reuse`: the same bits): a kernel row's three weight-gradient taps per
/// invocation, sliding along the row; the 4 x 4 patch a pooled window's or an upsampled
/// pixel's taps read, in the first layer's pooled forward and the one-channel layers' weight
/// gradients; the 2 x 2 x pixels an upsampled forward's window reads (at least 4 output
/// channels; a pair's 2 x 3 with 4 to 8); and, where the adapter's subgroups have one width, its 'same' convolutions
/// with no fold taking two pixels of a row per lane in the forward pass and input gradient
/// (and its upsampled ones in the input gradient, and with one output channel in the
/// forward pass), each lane loading its own columns of the
/// window and taking the ones beside them from its neighbours (`lanes`: `subgroupShuffle`,
/// a register permute on lavapipe; the same bits).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
// A config.json from before a fold existed records it as off.
#[serde(default)]
pub struct FoldSet {
    pub upsample: bool,
    pub pool: bool,
    pub reduces: bool,
    pub backward: bool,
    pub loss: bool,
    pub tiles: bool,
    pub finish: bool,
    pub rows: bool,
    pub vec4: bool,
    pub grads: bool,
    pub narrow: bool,
    pub single: bool,
    pub gather: bool,
    pub quads: bool,
    pub adam: bool,
    pub windows: bool,
    pub textures: bool,
    pub reuse: bool,
    pub lanes: bool,
}

impl FoldSet {
    pub const NONE: FoldSet = FoldSet {
        upsample: false,
        pool: false,
        reduces: false,
        backward: false,
        loss: false,
        tiles: false,
        finish: false,
        rows: false,
        vec4: false,
        grads: false,
        narrow: false,
        single: false,
        gather: false,
        quads: false,
        adam: false,
        windows: false,
        textures: false,
        reuse: false,
        lanes: false,
    };
    pub const ALL: FoldSet = FoldSet {
        upsample: true,
        pool: true,
        reduces: true,
        backward: true,
        loss: true,
        tiles: true,
        finish: true,
        rows: true,
        vec4: true,
        grads: true,
        narrow: true,
        single: true,
        gather: true,
        quads: true,
        adam: true,
        windows: true,
        textures: true,
        reuse: true,
        lanes: true,
    };
    /// The names `--folds` lists them by, in order.
    pub const NAMES: [&'static str; 19] = [
        "upsample", "pool", "reduces", "backward", "loss", "tiles", "finish", "rows", "vec4",
        "grads", "narrow", "single", "gather", "quads", "adam", "windows", "textures", "reuse",
        "lanes",
    ];

    /// The kernel variants among them: each changes how a kernel computes, not which
    /// dispatches a step has (`bench-kernels` times each beside the kernels without it).
    pub const VARIANTS: [&'static str; 5] = ["tiles", "vec4", "narrow", "single", "quads"];

    /// The CPU kernel set's own variants (`bench-kernels` times each beside that set without
    /// it): its dense products reading an operand through uniform windows, its convolutions
    /// reading their inputs and upstream gradients through textures, loading each pixel
    /// once for every tap that reads it, and sharing a row's loaded pixels across a subgroup.
    pub const CPU_VARIANTS: [&'static str; 4] = ["windows", "textures", "reuse", "lanes"];

    /// The rule: what a device opens with under `auto` (which then times sets at start-up on
    /// a GPU adapter's GPU set: `train::tune`), and keeps where it does not time. Everything
    /// on the GPU set (the conv model's step goes from 44 dispatches to 16, the dense model's
    /// from 10 to 2 and a 16th), but on a CPU adapter neither `adam` (its merged reduce took
    /// a lavapipe conv step 6-12% longer: BENCHMARKS.md) nor `gather` (the first
    /// convolution's pixel conversion at every tap cost lavapipe about 1% of a conv step more
    /// than the gather dispatch it saves: BENCHMARKS.md) nor `rows` (and `grads`, which needs
    /// it: on llvmpipe its barrier-bound workgroups took a dense step 2.7-3.1x longer
    /// than the per-layer kernels) nor `narrow` (the conv step 22-34% longer on lavapipe:
    /// BENCHMARKS.md) nor `quads` (not shown to pay there: a step's kernels -19% to +5% on
    /// lavapipe over three runs, within that machine's noise) nor `windows`, `textures`,
    /// `reuse` and `lanes` (the CPU set's); on the CPU set `windows` and `loss` (its own fused kernel loads each
    /// logit and target once for both: the loss's kernels 25-30% shorter; with both, a
    /// lavapipe dense step's kernels about 20% shorter: BENCHMARKS.md), `textures` (the
    /// kernels it serves 20-28% shorter; with its copies, a traced conv step's span 8% and a
    /// whole epoch 2% in one sitting), `reuse` (the kernels it changes 22-33% shorter:
    /// BENCHMARKS.md) and `lanes` (the kernels it changes 10-33% shorter, one binary with the flag and without:
    /// BENCHMARKS.md),
    /// whose kernels reduce their own sums and fold the layers they
    /// take by themselves (a 2x upsampling, a strided layer's map): another fold named there
    /// runs the GPU set's kernels for the layers it joins, except an upsampling the CPU set's
    /// kernels read through anyway.
    pub fn for_adapter(kernels: KernelSet, info: &wgpu::AdapterInfo) -> Self {
        match (kernels, info.device_type) {
            (KernelSet::Cpu, _) => FoldSet {
                windows: true,
                loss: true,
                textures: true,
                reuse: true,
                lanes: true,
                ..FoldSet::NONE
            },
            (KernelSet::Gpu, wgpu::DeviceType::Cpu) => FoldSet {
                rows: false,
                grads: false,
                gather: false,
                adam: false,
                narrow: false,
                quads: false,
                windows: false,
                textures: false,
                reuse: false,
                lanes: false,
                ..FoldSet::ALL
            },
            (KernelSet::Gpu, _) => FoldSet::ALL,
        }
    }

    /// Each fold's flag, in the order of [`FoldSet::NAMES`].
    fn flags(self) -> [bool; 19] {
        let mut set = self;
        Self::NAMES.map(|name| set.flag_mut(name).is_some_and(|on| *on))
    }

    /// The flag of the fold called `name` (one of [`FoldSet::NAMES`]).
    fn flag_mut(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "upsample" => &mut self.upsample,
            "pool" => &mut self.pool,
            "reduces" => &mut self.reduces,
            "backward" => &mut self.backward,
            "loss" => &mut self.loss,
            "tiles" => &mut self.tiles,
            "finish" => &mut self.finish,
            "rows" => &mut self.rows,
            "vec4" => &mut self.vec4,
            "grads" => &mut self.grads,
            "narrow" => &mut self.narrow,
            "single" => &mut self.single,
            "gather" => &mut self.gather,
            "quads" => &mut self.quads,
            "adam" => &mut self.adam,
            "windows" => &mut self.windows,
            "textures" => &mut self.textures,
            "reuse" => &mut self.reuse,
            "lanes" => &mut self.lanes,
            _ => return None,
        })
    }

    /// Turns on the fold called `name`; false for another name.
    fn set(&mut self, name: &str) -> bool {
        self.flag_mut(name).map(|flag| *flag = true).is_some()
    }

    /// This set with the fold called `name` too; None when it is in the set already.
    pub fn with(self, name: &str) -> Option<FoldSet> {
        let mut more = self;
        let flag = more.flag_mut(name).filter(|on| !**on)?;
        *flag = true;
        Some(more)
    }

    /// This set with the fold called `name` left out (and `grads` with `rows`, which it
    /// needs; `gather` and `adam` stay, as they apply to conv models without them); None when
    /// it is not in the set.
    pub fn without(self, name: &str) -> Option<FoldSet> {
        let mut less = self;
        let flag = less.flag_mut(name).filter(|on| **on)?;
        *flag = false;
        less.grads &= less.rows;
        Some(less)
    }

    /// `all`, `none`, or the folds' names joined by commas.
    pub fn name(self) -> String {
        let flags = self.flags();
        match flags {
            _ if flags.iter().all(|on| *on) => "all".into(),
            _ if !flags.iter().any(|on| *on) => "none".into(),
            flags => Self::NAMES
                .iter()
                .zip(flags)
                .filter(|(_, on)| *on)
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

impl fmt::Display for FoldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `--folds`: `auto` (timed at start-up on the GPU set of a GPU adapter, else
/// [`FoldSet::for_adapter`]: `train::tune`), `tune` (timed on any adapter), `all`, `none`, or
/// a comma-separated list of [`FoldSet::NAMES`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FoldChoice {
    #[default]
    Auto,
    Tune,
    Set(FoldSet),
}

impl FoldChoice {
    /// The folds a device opens with, and how they were chosen. `auto` and `tune` start from
    /// the adapter's rule; a command that trains may then time other sets (`train::tune`).
    pub fn resolve(self, kernels: KernelSet, info: &wgpu::AdapterInfo) -> (FoldSet, FoldsBy) {
        match self {
            FoldChoice::Auto | FoldChoice::Tune => {
                (FoldSet::for_adapter(kernels, info), FoldsBy::Rule)
            }
            FoldChoice::Set(set) => (set, FoldsBy::Flag),
        }
    }
}

/// How a device's folds were chosen (config.json, `bench`'s and `profile`'s reports).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum FoldsBy {
    /// `--folds` named them.
    Flag,
    /// `auto`'s rule for the adapter ([`FoldSet::for_adapter`]).
    #[default]
    Rule,
    /// Timed at start-up: the fastest of the sets tried (`train::tune`).
    Timing(FoldTiming),
    /// A resumed run's, as its folder's config.json records them for this adapter and
    /// kernel set.
    ResumedRun,
}

impl FoldsBy {
    /// A few words for the start-up line: "timed by gpu timestamps, fastest of 5 sets
    /// (0.4 s)".
    pub fn describe(&self) -> String {
        match self {
            FoldsBy::Flag => "as --folds says".into(),
            FoldsBy::Rule => "the adapter's rule".into(),
            FoldsBy::Timing(t) => {
                // "narrow off on conv2d, conv2d_1; tiles on conv2d_3"
                let mut own: Vec<(String, Vec<&str>)> = Vec::new();
                for l in t.layers.iter().filter(|l| l.kept) {
                    let what = format!("{}{}", l.variant, if l.on { "" } else { " off" });
                    match own.iter_mut().find(|(w, _)| *w == what) {
                        Some((_, layers)) => layers.push(&l.layer),
                        None => own.push((what, vec![&l.layer])),
                    }
                }
                let own: Vec<String> = own
                    .into_iter()
                    .map(|(what, layers)| format!("{what} on {}", layers.join(", ")))
                    .collect();
                let per_layer = match own.is_empty() {
                    true => String::new(),
                    false => format!("; per layer: {}", own.join("; ")),
                };
                format!(
                    "timed by {}, fastest of {} sets ({:.1} s){per_layer}",
                    t.clock,
                    t.trials.len(),
                    t.seconds
                )
            }
            FoldsBy::ResumedRun => "the resumed run's, on this adapter".into(),
        }
    }
}

/// A start-up timing of fold sets.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FoldTiming {
    /// `gpu timestamps` (each step's pass, barriers included) or `wall clock`.
    pub clock: &'static str,
    pub batch_size: u32,
    /// Timed steps per set, after the warm-up.
    pub steps: usize,
    /// The whole timing, networks and pipelines built included.
    pub seconds: f64,
    /// Every set timed, in order; sets whose step is the same as one before are not.
    pub trials: Vec<FoldTrial>,
    /// The per-layer pass after the search: each conv layer's dispatches timed with a
    /// variant flipped against the pick's (empty where nothing was compared).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerTrial>,
}

/// One layer's dispatches timed with one variant flipped (`train::tune`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerTrial {
    pub layer: String,
    /// One of `train::tune::PER_LAYER`: `narrow`, `tiles`, `vec4` or `quads`.
    pub variant: &'static str,
    /// Whether the flipped set has it on.
    pub on: bool,
    /// The layer's GPU time per step (the median step's sum of its dispatches) with the
    /// search's pick, and with the variant flipped, in µs.
    pub us_picked: f64,
    pub us_flipped: f64,
    /// Whether the layer keeps the flipped variant (faster past the margin, and the step
    /// with every layer's choice was faster than without).
    pub kept: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FoldTrial {
    pub folds: String,
    pub dispatches: usize,
    /// Median over the timed steps.
    pub us_per_step: f64,
}

impl FromStr for FoldChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => return Ok(FoldChoice::Auto),
            "tune" => return Ok(FoldChoice::Tune),
            "all" => return Ok(FoldChoice::Set(FoldSet::ALL)),
            "none" => return Ok(FoldChoice::Set(FoldSet::NONE)),
            _ => {}
        }
        let mut set = FoldSet::NONE;
        for name in s.split(',').map(|n| n.trim().to_ascii_lowercase()) {
            if !set.set(&name) {
                let (last, rest) = FoldSet::NAMES.split_last().unwrap_or((&"", &[]));
                return Err(format!(
                    "unknown fold '{name}': use auto, tune, all, none, or a comma-separated \
                     list of {} and {last}",
                    rest.join(", ")
                ));
            }
        }
        Ok(FoldChoice::Set(set))
    }
}

impl fmt::Display for FoldChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FoldChoice::Auto => f.write_str("auto"),
            FoldChoice::Tune => f.write_str("tune"),
            FoldChoice::Set(set) => set.fmt(f),
        }
    }
}

/// What a command opens: an adapter, the kernel set to run on it, and the folds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceChoice {
    pub adapter: AdapterChoice,
    pub kernels: KernelChoice,
    pub folds: FoldChoice,
    pub steps_per_execution: super::StepsPerExecution,
}

impl DeviceChoice {
    /// `adapter` and `kernels`, the folds `auto`.
    pub fn new(adapter: AdapterChoice, kernels: KernelChoice) -> Self {
        DeviceChoice {
            adapter,
            kernels,
            folds: FoldChoice::Auto,
            steps_per_execution: Default::default(),
        }
    }

    pub fn with_folds(self, folds: FoldChoice) -> Self {
        DeviceChoice { folds, ..self }
    }

    pub fn with_steps_per_execution(self, steps_per_execution: super::StepsPerExecution) -> Self {
        DeviceChoice {
            steps_per_execution,
            ..self
        }
    }
}

impl From<AdapterChoice> for DeviceChoice {
    fn from(adapter: AdapterChoice) -> Self {
        DeviceChoice::new(adapter, KernelChoice::Auto)
    }
}
