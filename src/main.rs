//! The command line: parse, call the library, print.
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use wgsl_autoencoder::commands::{self, bench, DecodeFrom};
use wgsl_autoencoder::data;
use wgsl_autoencoder::gpu::{
    AdapterChoice, DeviceChoice, FoldChoice, KernelChoice, StepsPerExecution,
};
use wgsl_autoencoder::interrupt;
use wgsl_autoencoder::model::{ModelChoice, ModelKind};
use wgsl_autoencoder::run::{self, Control, Event, RunOptions, TrainRequest};
use wgsl_autoencoder::train::TrainConfig;

/// `println!` that never panics: a closed or full stdout (a dead pager, `head`, a full log
/// disk) must not cost a run, so a failed write is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics, for the same reason.
macro_rules! warn {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "wgsl-autoencoder",
    version,
    about = "Train the Keras autoencoders on MNIST with hand-written WGSL compute shaders."
)]
struct Cli {
    /// GPU adapter: auto, discrete, integrated, cpu, an index from `devices`, or part of a name.
    #[arg(long, global = true, default_value = "auto")]
    adapter: AdapterChoice,
    /// Kernel set: auto (cpu on a CPU adapter such as lavapipe, gpu elsewhere), gpu or cpu.
    #[arg(long, global = true, default_value = "auto")]
    kernels: KernelChoice,
    /// Work folded into fewer dispatches (on the gpu kernel set, the same results to the
    /// bit), a comma-separated list of upsample (a 2x upsampling runs inside the convolution
    /// after it), pool (a 2x2 max pool inside the convolution before it), reduces (every
    /// weight-gradient reduce as one dispatch), backward (a convolution's input and weight
    /// gradients as one dispatch), loss (the loss pass writes the loss gradient too), finish
    /// (Adam's dispatch finishes the loss), rows (a dense model's forward pass, loss gradient
    /// and input gradients as one dispatch), grads (with rows, its weight gradients and the
    /// loss's partial sums as one more), gather (the first dispatch gathers its own batch
    /// from the dataset, inputs without noise: rows, or a first convolution with 'same'
    /// padding and no folded pool dropping an odd row or column) and adam (Adam's step where the weight gradients are
    /// summed: with grads in that dispatch, every step's loss finished by one dispatch per
    /// execution, needing 11 storage buffers per stage; with reduces, on a model whose
    /// weights are all convolutions', in the merged reduce with the loss's finish), and the
    /// kernel variants tiles (the
    /// weight-gradient partials stage each workgroup's gradient once), vec4 (the dense
    /// split-K kernels load 4 features at once, the convolutions 4 channels at once in the
    /// forward pass, input gradient and weight-gradient partials), narrow (the convolutions
    /// keep 4 channels
    /// per invocation, not 16: 4x the invocations), single (rows takes one sample per
    /// workgroup, not two: 2x the workgroups), quads (a folded pool's or upsampling's 2x2
    /// window on four invocations, not one), windows (the cpu set's dense products read
    /// the operand that fits in 64 KiB uniform windows through them: the forward pass's
    /// kernel in two, the input gradient's kernel or a narrow layer's input or output
    /// gradient in one), textures (the
    /// cpu set's convolutions read the forward pass's input and, where it does not take
    /// lanes, the input gradient's upstream gradient through textures, each copied in before
    /// the op's first dispatch), reuse
    /// (the cpu set's convolutions load each pixel once for every tap that reads it: a
    /// kernel row's three weight-gradient taps per invocation, a pooled window's or an
    /// upsampled pixel's 4x4 patch, the 2x2 pixels an upsampled forward's window reads, a
    /// layer's input gradient two neighbouring pixels per invocation) and lanes (where the adapter's subgroups have one width, the cpu set's
    /// 'same' convolutions with no fold take two pixels of a row per lane in the forward pass
    /// and input gradient, and its upsampled ones in the input gradient (with one output
    /// channel, the forward pass too), each lane loading
    /// its own columns of the window and taking the ones beside them from its neighbour
    /// lanes); or all, none, tune (train, bench and profile
    /// time sets of folds at start-up and keep the fastest: the gpu kernel set only, where
    /// they change no bit), auto (tune on a GPU adapter's gpu kernel set; elsewhere all on the
    /// gpu set but rows, grads, gather, adam, narrow, quads, windows, textures, reuse and
    /// lanes on a CPU adapter,
    /// loss, windows, textures, reuse and lanes on cpu (whose kernels fold upsamplings, strided maps and a pool after a layer with one input
    /// channel themselves, and with pool the rest of the pools they take); a
    /// resumed run keeps the folds its config.json records for the same adapter; tune times
    /// them again).
    #[arg(long, global = true, default_value = "auto")]
    folds: FoldChoice,
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command: `train`.
    #[command(flatten)]
    train: TrainArgs,
}

/// `--model`: conv, dense, deep, or a Keras `model.to_json()` file (read and checked now).
fn parse_model(arg: &str) -> std::result::Result<ModelChoice, String> {
    ModelChoice::from_arg(arg).map_err(|e| e.to_string())
}

/// `export --model`: a built-in.
fn parse_builtin(arg: &str) -> std::result::Result<ModelKind, String> {
    ModelKind::ALL
        .into_iter()
        .find(|k| k.name() == arg)
        .ok_or_else(|| format!("'{arg}' is not a built-in model: use conv, dense or deep"))
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and leave its results in a run folder (the default command).
    Train(TrainArgs),
    /// Validation loss of a checkpoint on the test split.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        data: DataArg,
    },
    /// Codes of a split as .npy (codes and OUT.labels.npy beside it).
    Encode {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Encode the training split instead of the test split.
        #[arg(long)]
        train_split: bool,
        #[command(flatten)]
        data: DataArg,
    },
    /// The decoder as a generator, to a PNG of digits: codes from a .npy file, a walk between
    /// two test images' codes, or random codes. Give exactly one of --codes, --interpolate,
    /// --sample.
    #[command(group(
        clap::ArgGroup::new("source")
            .required(true)
            .args(["codes", "interpolate", "sample"])
    ))]
    Decode {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Codes from a .npy file as `encode` writes them (needs no dataset): a grid of digits.
        #[arg(long)]
        codes: Option<PathBuf>,
        /// At most this many codes of --codes are drawn.
        #[arg(long, default_value_t = 100, conflicts_with_all = ["interpolate", "sample"])]
        count: usize,
        /// Test images A and B (indices into the test split of --data): their codes and the
        /// codes evenly between, decoded into one row of --steps digits.
        #[arg(
            long,
            value_name = "A,B",
            value_parser = commands::parse_index_pair,
            allow_hyphen_values = true
        )]
        interpolate: Option<(usize, usize)>,
        /// Digits of the --interpolate strip, both ends included.
        #[arg(long, value_name = "K", default_value_t = 10, conflicts_with_all = ["codes", "sample"])]
        steps: usize,
        /// Draw N codes from a Gaussian per code dimension fitted to the codes of the
        /// training split of --data, and decode them into a grid, ten per row.
        #[arg(long, value_name = "N")]
        sample: Option<usize>,
        /// Seeds the --sample draws.
        #[arg(long, value_name = "S", default_value_t = 0, conflicts_with_all = ["codes", "interpolate"])]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        data: DataArg,
    },
    /// Every adapter wgpu sees, with the limits and features this program uses.
    Devices,
    /// Write a built-in model as Keras 3's `model.to_json()` describes it (what
    /// `keras.models.model_from_json` reads; `--model FILE.json` trains it back).
    Export {
        /// conv, dense or deep.
        #[arg(long, value_parser = parse_builtin)]
        model: ModelKind,
        /// The JSON file to write (it must not exist yet).
        #[arg(long)]
        out: PathBuf,
    },
    /// GPU time of every dispatch of a training step, by kernel, with GB/s and GFLOP/s.
    Profile {
        /// conv, dense, deep, or a Keras `model.to_json()` file.
        #[arg(long, value_parser = parse_model, default_value = "conv")]
        model: ModelChoice,
        /// Timed steps (after the warm-up).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 256)]
        batch_size: u32,
        /// Write a Chrome trace (open it in Perfetto or chrome://tracing).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// (The timed steps go one per submit; this sets the untimed ones' wall time.)
        #[command(flatten)]
        execution: ExecutionArg,
        #[command(flatten)]
        data: DataArg,
    },
    /// Every dispatch of a training step timed under each kernel set (gpu, cpu; --kernels SET
    /// times that one only) and each of its kernel variants (the gpu set's tiles, vec4, narrow,
    /// single, quads; the cpu set's windows, textures, reuse, lanes) that changes one of the model's
    /// dispatches, side by side per layer: which code is faster where, on this adapter ("=
    /// gpu" where a variant leaves a dispatch as it is). All run unfolded unless
    /// --folds names folds (then all run those, each variant added; auto counts as none here),
    /// but for the cpu set's own: its convolutions read upsamplings and strided maps themselves,
    /// and one with a single input channel writes the pool after it through.
    BenchKernels {
        /// conv, dense, deep, or a Keras `model.to_json()` file.
        #[arg(long, value_parser = parse_model, default_value = "conv")]
        model: ModelChoice,
        /// Timed steps per kernel set (after the warm-up).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed steps first, per set (clocks ramp up, pipelines compile).
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        #[arg(long, default_value_t = 256)]
        batch_size: u32,
        /// Also write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Steady-state training and inference throughput (first epoch excluded).
    Bench {
        /// One model (conv, dense, deep, or a Keras `model.to_json()` file); default: conv
        /// and dense.
        #[arg(long, value_parser = parse_model)]
        model: Option<ModelChoice>,
        /// Epochs per model; the first is warm-up.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        #[arg(long, default_value_t = 256)]
        batch_size: u32,
        #[arg(long)]
        train_limit: Option<usize>,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        execution: ExecutionArg,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Args, Clone)]
struct ExecutionArg {
    /// Training steps (and validation batches) recorded into one command buffer and
    /// submitted together, as Keras' compile(steps_per_execution=N): auto (16 on a GPU, 1 on
    /// a CPU adapter, where a submit runs before it returns) or 1 to 1024. Results are the
    /// same bit for bit at any value; only the host's and driver's share of a step changes.
    #[arg(long, value_name = "N", default_value = "auto")]
    steps_per_execution: StepsPerExecution,
}

#[derive(Args, Clone)]
struct DataArg {
    /// A folder with the four MNIST IDX files (raw or .gz). Default: the shipped assets/mnist
    /// (with --resume: the folder the run recorded).
    #[arg(long)]
    data: Option<PathBuf>,
}

impl DataArg {
    fn dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(data::default_dir)
    }
}

#[derive(Args, Clone)]
struct TrainArgs {
    /// Which autoencoder: conv, dense, deep, or a Keras `model.to_json()` file (default:
    /// conv; with --resume, the checkpoint's).
    #[arg(long, value_parser = parse_model)]
    model: Option<ModelChoice>,
    /// The layer whose output is the code (encode, decode and the pictures use the layers up
    /// to it). Default: the first layer with the narrowest output.
    #[arg(long, value_name = "NAME")]
    code_layer: Option<String>,
    /// Epochs (default: the seed's, 100 for conv and deep, 50 for dense; 100 for a file).
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per step (default: 256).
    #[arg(long)]
    batch_size: Option<u32>,
    /// Adam's learning rate (default: 1e-3, or what a model file's compile() recorded).
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Seeds the initial weights, the shuffles and the noise (default: 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Denoising: inputs + F * N(0, 1), clipped to [0, 1]; targets stay clean (default: 0).
    #[arg(long, allow_negative_numbers = true)]
    noise: Option<f32>,
    /// The run folder (default: a new runs/<date-time>/). It must be empty: a run folder
    /// belongs to one run.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Empty a non-empty --out folder first (its files are deleted).
    #[arg(long, requires = "out")]
    overwrite: bool,
    /// Leave out the TensorBoard event files (train/ and validation/ in the run folder).
    #[arg(long)]
    no_tensorboard: bool,
    /// Continue a run: its folder or a checkpoint file (from the exact step it holds).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Also write checkpoint.safetensors every N training steps, inside epochs (it is always
    /// written at the end of each epoch).
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// After training, profile 20 steps: profile.txt (GPU time per kernel) and trace.json
    /// (Chrome trace) in the run folder.
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    execution: ExecutionArg,
    #[command(flatten)]
    data: DataArg,
}

impl TrainArgs {
    fn request(&self) -> TrainRequest {
        TrainRequest {
            model: self.model.clone(),
            code_layer: self.code_layer.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: self.seed,
            train_limit: self.train_limit,
            noise: self.noise,
        }
    }
}

/// Prints a run's events: a line per epoch, a progress bar within one.
struct Printer {
    bar: Option<ProgressBar>,
    style: ProgressStyle,
    epochs: usize,
    /// When this session started, and where: its first epoch, the steps of that epoch
    /// already done (a resumed checkpoint), the steps per epoch. The run's ETA is estimated
    /// from this session's pace.
    started: Option<std::time::Instant>,
    first_epoch: usize,
    first_step: usize,
    steps: usize,
}

impl Printer {
    fn new() -> Self {
        // `wide_msg`: the message is cut at the terminal's edge rather than wrapped, so the
        // loss and the run's ETA come first.
        let style = ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Printer {
            bar: None,
            style,
            epochs: 0,
            started: None,
            first_epoch: 1,
            first_step: 0,
            steps: 1,
        }
    }

    /// The time left until the run's last epoch ends, at step `done` of `epoch`, from this
    /// session's pace so far (its wall time, validation and writes included); None before
    /// any step of this session is done.
    fn run_eta(&self, epoch: usize, done: usize) -> Option<String> {
        let steps = self.steps.max(1) as f64;
        let worked = epoch.saturating_sub(self.first_epoch) as f64
            + (done as f64 - self.first_step as f64) / steps;
        let left = self.epochs.saturating_sub(epoch) as f64
            + self.steps.saturating_sub(done) as f64 / steps;
        let elapsed = self.started?.elapsed().as_secs_f64();
        (worked > 0.0).then(|| Self::duration(elapsed / worked * left))
    }

    /// `45s`, `3m24s`, `2h05m`.
    fn duration(secs: f64) -> String {
        let s = secs.max(0.0).round() as u64;
        match s {
            0..60 => format!("{s}s"),
            60..3600 => format!("{}m{:02}s", s / 60, s % 60),
            _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Started {
                adapter,
                kernels,
                folds,
                folds_by,
                steps_per_execution,
                run_dir,
                model,
                train_count,
                test_count,
                steps,
                epochs,
                first_epoch,
                first_step,
            } => {
                self.epochs = epochs;
                (self.first_epoch, self.first_step, self.steps) = (first_epoch, first_step, steps);
                self.started = Some(std::time::Instant::now());
                let per = per_submit(steps_per_execution);
                say!("adapter: {adapter}, {kernels} kernels, folds: {folds} ({folds_by}), {per}");
                say!("run folder: {}", run_dir.display());
                say!(
                    "{model} on {train_count} training and {test_count} test images, {steps} steps per epoch, epochs {first_epoch}..={epochs}"
                );
                if first_step > 0 {
                    say!("epoch {first_epoch} continues at step {}", first_step + 1);
                }
            }
            Event::Progress {
                epoch,
                done,
                steps,
                images_per_s,
                running_loss,
            } => {
                let mut parts = Vec::new();
                parts.extend(running_loss.map(|l| format!("loss: {l:.4}")));
                parts.extend(self.run_eta(epoch, done).map(|t| format!("run ETA {t}")));
                parts.push(format!("{images_per_s:.0} images/s"));
                let msg = parts.join(" - ");
                let b = self.bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(steps as u64).with_style(self.style.clone());
                    b.set_prefix(format!("epoch {epoch}/{}", self.epochs));
                    b
                });
                b.set_position(done as u64);
                b.set_message(msg);
            }
            Event::Epoch { metrics: m, epochs } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                // The run's ETA after every epoch but the last.
                let eta = (m.epoch < epochs)
                    .then(|| self.run_eta(m.epoch, self.steps))
                    .flatten()
                    .map_or(String::new(), |t| format!(" - run ETA {t}"));
                say!(
                    "epoch {}/{} - {:.1}s - loss: {:.4} - val_loss: {:.4}{eta}",
                    m.epoch,
                    epochs,
                    m.seconds,
                    m.loss,
                    m.val_loss
                );
            }
            Event::Finished { .. } => {}
        }
    }
}

fn train(adapter: DeviceChoice, a: TrainArgs) -> Result<()> {
    let adapter = adapter.with_steps_per_execution(a.execution.steps_per_execution);
    let opts = RunOptions {
        request: a.request(),
        data_dir: a.data.data.clone(),
        out_dir: a.out,
        overwrite: a.overwrite,
        tensorboard: !a.no_tensorboard,
        device: adapter,
        resume: a.resume,
    };
    // Ctrl-C / SIGTERM: stop after the current step with a checkpoint (a second one quits
    // at once). Without the handler a signal still kills the run, losing only the steps
    // since the last checkpoint.
    if let Err(e) = interrupt::install() {
        warn!("warning: Ctrl-C will not write a checkpoint: {e}");
    }
    let ctl = Control {
        stop: Some(interrupt::flag()),
        checkpoint_every: a.checkpoint_every,
        profile: a.profile,
        ..Control::default()
    };
    let mut printer = Printer::new();
    let dir = run::train_with(&opts, &ctl, &mut |e| printer.event(e))?;
    say!("results in {}", dir.display());
    Ok(())
}

/// The command that resumes an interrupted run, with the flags it needs again.
fn resume_command(dir: &std::path::Path, cli_args: &[String]) -> String {
    let mut cmd = format!(
        "{} --resume {}",
        env!("CARGO_PKG_NAME"),
        shell_word(&dir.display().to_string())
    );
    let mut args = cli_args.iter();
    while let Some(a) = args.next() {
        let flag = a.split('=').next().unwrap_or(a);
        if ["--no-tensorboard", "--profile"].contains(&flag) {
            cmd.push(' ');
            cmd.push_str(flag);
            continue;
        }
        if [
            "--data",
            "--adapter",
            "--kernels",
            "--folds",
            "--checkpoint-every",
            "--steps-per-execution",
        ]
        .contains(&flag)
        {
            cmd.push(' ');
            cmd.push_str(&shell_word(a));
            if !a.contains('=') {
                if let Some(v) = args.next() {
                    cmd.push(' ');
                    cmd.push_str(&shell_word(v));
                }
            }
        }
    }
    cmd
}

/// "1 step per submit", "16 steps per submit".
fn per_submit(steps: usize) -> String {
    match steps {
        1 => "1 step per submit".into(),
        n => format!("{n} steps per submit"),
    }
}

/// A string as a shell word.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn bench_cmd(
    adapter: DeviceChoice,
    model: Option<ModelChoice>,
    epochs: usize,
    batch_size: u32,
    train_limit: Option<usize>,
    json: Option<PathBuf>,
    data: DataArg,
) -> Result<()> {
    let opts = bench::BenchOptions {
        device: adapter,
        models: model.map_or(vec![ModelKind::Conv.into(), ModelKind::Dense.into()], |m| {
            vec![m]
        }),
        batch_size,
        epochs,
        train_limit,
        data_dir: data.dir(),
        json: json.clone(),
    };
    let results = bench::bench(&opts).context("bench failed")?;
    say!(
        "{:<6} {:>8} {:>10} {:>12} {:>10} {:>12} {:>10} {:>9}  adapter",
        "model",
        "images",
        "s/epoch",
        "train img/s",
        "ms/step",
        "infer img/s",
        "GPU MiB",
        "val_loss"
    );
    for r in &results {
        say!(
            "{:<6} {:>8} {:>10.3} {:>12.0} {:>10.3} {:>12.0} {:>10.1} {:>9.4}  {} ({}, {})",
            r.model,
            r.train_images,
            r.seconds_per_epoch,
            r.train_images_per_s,
            r.ms_per_step,
            r.infer_images_per_s,
            r.gpu_buffer_bytes as f64 / (1 << 20) as f64,
            r.final_val_loss,
            r.adapter,
            r.backend,
            r.driver
        );
    }
    for r in &results {
        say!(
            "{}: {} kernels, folds: {} ({}), {}{}",
            r.model,
            r.kernels,
            r.folds,
            r.folds_by.describe(),
            per_submit(r.steps_per_execution),
            match r.loop_bounding {
                true => ", loops bounded (naga-loop-bounding build)",
                false => "",
            }
        );
    }
    if let Some(path) = json {
        say!("wrote {}", path.display());
    }
    Ok(())
}

/// `--adapter` is global and may come before or after a command; the training flags of the
/// default command may not come before another command (they would be ignored).
fn parse() -> Cli {
    let mut cmd = Cli::command();
    let m = cmd.get_matches_mut();
    if let Some((sub, _)) = m.subcommand() {
        let early = cmd.get_arguments().find_map(|a| {
            let given = m.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine);
            (given && !a.is_global_set())
                .then(|| a.get_long().unwrap_or(a.get_id().as_str()).to_string())
        });
        if let Some(flag) = early {
            cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--{flag} is given before the `{sub}` command; put the options of `{sub}` \
                     after it (only --adapter may come first)"
                ),
            )
            .exit();
        }
    }
    Cli::from_arg_matches(&m).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// The error and its causes, each once: `{:#}` would repeat a cause that a message already
/// quotes (an I/O error inside "path: error").
fn message(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}

fn eval(adapter: &DeviceChoice, checkpoint: &std::path::Path, data: &DataArg) -> Result<()> {
    let r = commands::eval(adapter, checkpoint, &data.dir()).context("eval failed")?;
    say!("adapter: {}", r.adapter);
    say!(
        "{} model, epoch {}: val_loss {:.4}",
        r.model,
        r.epoch,
        r.val_loss
    );
    Ok(())
}

fn encode(
    adapter: &DeviceChoice,
    checkpoint: &std::path::Path,
    out: &std::path::Path,
    train_split: bool,
    data: &DataArg,
) -> Result<()> {
    let (n, [h, w, c]) = commands::encode(adapter, checkpoint, &data.dir(), train_split, out)
        .context("encode failed")?;
    say!("wrote {n} codes of {h}x{w}x{c} to {}", out.display());
    say!(
        "wrote their labels to {}",
        commands::labels_path(out).display()
    );
    Ok(())
}

fn profile(
    adapter: DeviceChoice,
    model: ModelChoice,
    (steps, warmup, batch_size): (usize, usize, u32),
    trace: Option<PathBuf>,
    data: &DataArg,
) -> Result<()> {
    let mut config = TrainConfig::new(model);
    config.batch_size = batch_size;
    let opts = bench::ProfileOptions {
        device: adapter,
        config,
        data_dir: data.dir(),
        steps,
        warmup,
        trace: trace.clone(),
    };
    let r = bench::profile(&opts).context("profile failed")?;
    say!("{}", r.text().trim_end());
    if let Some(t) = trace {
        say!("trace written to {}", t.display());
    }
    Ok(())
}

fn bench_kernels(
    device: DeviceChoice,
    model: ModelChoice,
    (steps, warmup, batch_size): (usize, usize, u32),
    json: Option<PathBuf>,
    data: &DataArg,
) -> Result<()> {
    let mut config = TrainConfig::new(model);
    config.batch_size = batch_size;
    let opts = bench::KernelBenchOptions {
        device,
        config,
        data_dir: data.dir(),
        steps,
        warmup,
        json: json.clone(),
    };
    let r = bench::bench_kernels(&opts).context("bench-kernels failed")?;
    say!("{}", r.text().trim_end());
    if let Some(path) = json {
        say!("wrote {}", path.display());
    }
    Ok(())
}

/// What `decode` did, in a line.
fn decoded(n: usize, from: &DecodeFrom, out: &std::path::Path) -> String {
    let what = match from {
        DecodeFrom::Codes { .. } => format!("{n} codes"),
        DecodeFrom::Interpolate { a, b, .. } => {
            format!("{n} codes interpolated from test image {a} to test image {b}")
        }
        DecodeFrom::Sample { seed, .. } => {
            format!("{n} codes sampled from the training split's code distribution (seed {seed})")
        }
    };
    format!("decoded {what} into {}", out.display())
}

fn dispatch(cli: Cli) -> Result<()> {
    let device = DeviceChoice::new(cli.adapter.clone(), cli.kernels).with_folds(cli.folds);
    match cli.command {
        None => train(device, cli.train),
        Some(Command::Train(a)) => train(device, a),
        Some(Command::Eval { checkpoint, data }) => eval(&device, &checkpoint, &data),
        Some(Command::Encode {
            checkpoint,
            out,
            train_split,
            data,
        }) => encode(&device, &checkpoint, &out, train_split, &data),
        Some(Command::Decode {
            checkpoint,
            codes,
            count,
            interpolate,
            steps,
            sample,
            seed,
            out,
            data,
        }) => {
            let from = match (codes, interpolate, sample) {
                (Some(path), ..) => DecodeFrom::Codes { path, count },
                (_, Some((a, b)), _) => DecodeFrom::Interpolate { a, b, steps },
                (_, _, Some(count)) => DecodeFrom::Sample { count, seed },
                _ => anyhow::bail!("decode needs one of --codes, --interpolate, --sample"),
            };
            let n = commands::decode_from(&device, &checkpoint, &from, &data.dir(), &out)
                .context("decode failed")?;
            say!("{}", decoded(n, &from, &out));
            Ok(())
        }
        Some(Command::Profile {
            model,
            steps,
            warmup,
            batch_size,
            trace,
            execution,
            data,
        }) => profile(
            device.with_steps_per_execution(execution.steps_per_execution),
            model,
            (steps, warmup, batch_size),
            trace,
            &data,
        ),
        Some(Command::BenchKernels {
            model,
            steps,
            warmup,
            batch_size,
            json,
            data,
        }) => bench_kernels(device, model, (steps, warmup, batch_size), json, &data),
        Some(Command::Bench {
            model,
            epochs,
            batch_size,
            train_limit,
            json,
            execution,
            data,
        }) => bench_cmd(
            device.with_steps_per_execution(execution.steps_per_execution),
            model,
            epochs,
            batch_size,
            train_limit,
            json,
            data,
        ),
        Some(Command::Export { model, out }) => {
            commands::export(model, &out).context("export failed")?;
            say!("wrote the {} model to {}", model.name(), out.display());
            Ok(())
        }
        Some(Command::Devices) => {
            say!("{}", commands::devices().trim_end());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = parse();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Stopped by a signal: what was saved and how to resume; 128 + the signal.
            if let Some(wgsl_autoencoder::Error::Interrupted { signal, resume, .. }) =
                e.downcast_ref()
            {
                warn!("{}", message(&e));
                if let Some(dir) = resume {
                    warn!("To continue it: {}", resume_command(dir, &args));
                }
                return ExitCode::from(interrupt::exit_code(*signal));
            }
            warn!("error: {}", message(&e));
            ExitCode::from(1)
        }
    }
}
