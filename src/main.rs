//! The command line: parse, call the library, print.
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use wgsl_autoencoder::data;
use wgsl_autoencoder::gpu::AdapterChoice;
use wgsl_autoencoder::model::ModelKind;
use wgsl_autoencoder::ops::adam::AdamConfig;
use wgsl_autoencoder::train::run::{self, Control, Event, RunOptions};
use wgsl_autoencoder::train::{checkpoint, TrainConfig};
use wgsl_autoencoder::{app, bench, interrupt};

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
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command: `train`.
    #[command(flatten)]
    train: TrainArgs,
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
    /// The decoder as a generator: codes (.npy from `encode`) to a PNG grid of digits.
    Decode {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        codes: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// At most this many codes are drawn.
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[command(flatten)]
        data: DataArg,
    },
    /// Every adapter wgpu sees, with the limits and features this program uses.
    Devices,
    /// GPU time of every dispatch of a training step, by kernel, with GB/s and GFLOP/s.
    Profile {
        #[arg(long, value_enum, default_value = "conv")]
        model: ModelKind,
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
        #[command(flatten)]
        data: DataArg,
    },
    /// Steady-state training and inference throughput (first epoch excluded).
    Bench {
        /// One model; default: conv and dense.
        #[arg(long, value_enum)]
        model: Option<ModelKind>,
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
        data: DataArg,
    },
}

#[derive(Args, Clone)]
struct DataArg {
    /// A folder with the four MNIST IDX files (raw or .gz). Default: the shipped assets/mnist.
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
    /// Which autoencoder (default: conv; with --resume, the checkpoint's).
    #[arg(long, value_enum)]
    model: Option<ModelKind>,
    /// Epochs (default: the seed's, 100 for conv and deep, 50 for dense).
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 256)]
    batch_size: u32,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    lr: f32,
    /// Seeds the initial weights, the shuffles and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Denoising: inputs + F * N(0, 1), clipped to [0, 1]; targets stay clean.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    noise: f32,
    /// The run folder (default: runs/<date-time>/).
    #[arg(long)]
    out: Option<PathBuf>,
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
    data: DataArg,
}

fn train(adapter: AdapterChoice, a: TrainArgs) -> Result<()> {
    // On --resume the checkpoint's model is the default; a different --model is refused by
    // run::train.
    let model = match (a.model, &a.resume) {
        (Some(m), _) => m,
        (None, Some(r)) => checkpoint::load(&run::checkpoint_path(r))?.model,
        (None, None) => ModelKind::Conv,
    };
    let mut config = TrainConfig::new(model);
    config.epochs = a.epochs.unwrap_or(config.epochs);
    config.batch_size = a.batch_size;
    config.adam = AdamConfig {
        lr: a.lr,
        ..AdamConfig::default()
    };
    config.seed = a.seed;
    config.train_limit = a.train_limit;
    config.noise = a.noise;
    let opts = RunOptions {
        config,
        epochs_flag: a.epochs,
        data_dir: a.data.dir(),
        out_dir: a.out,
        adapter,
        resume: a.resume,
    };
    let mut bar: Option<ProgressBar> = None;
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    // Ctrl-C / SIGTERM: stop after the current step with a checkpoint (a second one quits
    // at once). Without the handler a signal still kills the run, losing only the steps
    // since the last checkpoint.
    if let Err(e) = interrupt::install() {
        eprintln!("warning: Ctrl-C will not write a checkpoint: {e}");
    }
    let ctl = Control {
        stop: Some(interrupt::flag()),
        checkpoint_every: a.checkpoint_every,
        profile: a.profile,
        ..Control::default()
    };
    let mut epochs = 0;
    let dir = run::train_with(&opts, &ctl, &mut |e| match e {
        Event::Started {
            adapter,
            run_dir,
            train_count,
            test_count,
            steps,
            epochs: n,
            first_epoch,
            first_step,
        } => {
            epochs = n;
            println!("adapter: {adapter}");
            println!("run folder: {}", run_dir.display());
            println!(
                "{} on {train_count} training and {test_count} test images, {steps} steps per epoch, epochs {first_epoch}..={n}",
                opts.config.model.name()
            );
            if first_step > 0 {
                println!("epoch {first_epoch} continues at step {}", first_step + 1);
            }
        }
        Event::Progress {
            epoch,
            done,
            steps,
            images_per_s,
            running_loss,
        } => {
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(steps as u64).with_style(style.clone());
                b.set_prefix(format!("epoch {epoch}/{epochs}"));
                b
            });
            b.set_position(done as u64);
            b.set_message(match running_loss {
                Some(l) => format!("{images_per_s:.0} images/s - loss: {l:.4}"),
                None => format!("{images_per_s:.0} images/s"),
            });
        }
        Event::Epoch { metrics: m, epochs } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            println!(
                "epoch {}/{} - {:.1}s - loss: {:.4} - val_loss: {:.4}",
                m.epoch, epochs, m.seconds, m.loss, m.val_loss
            );
        }
        Event::Finished { .. } => {}
    })?;
    println!("results in {}", dir.display());
    Ok(())
}

fn bench_cmd(
    adapter: AdapterChoice,
    model: Option<ModelKind>,
    epochs: usize,
    batch_size: u32,
    train_limit: Option<usize>,
    json: Option<PathBuf>,
    data: DataArg,
) -> Result<()> {
    let opts = bench::BenchOptions {
        adapter,
        models: model.map_or(vec![ModelKind::Conv, ModelKind::Dense], |m| vec![m]),
        batch_size,
        epochs,
        train_limit,
        data_dir: data.dir(),
    };
    let results = bench::bench(&opts).context("bench failed")?;
    println!(
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
        println!(
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
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&results)?;
        wgsl_autoencoder::atomic::write_atomic(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
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

fn main() -> ExitCode {
    let cli = parse();
    let adapter = cli.adapter.clone();
    let r: Result<()> = match cli.command {
        None => train(adapter, cli.train),
        Some(Command::Train(a)) => train(adapter, a),
        Some(Command::Eval { checkpoint, data }) => app::eval(&adapter, &checkpoint, &data.dir())
            .map(|r| {
                println!("adapter: {}", r.adapter);
                println!(
                    "{} model, epoch {}: val_loss {:.4}",
                    r.model, r.epoch, r.val_loss
                );
            })
            .context("eval failed"),
        Some(Command::Encode {
            checkpoint,
            out,
            train_split,
            data,
        }) => app::encode(&adapter, &checkpoint, &data.dir(), train_split, &out)
            .map(|(n, [h, w, c])| {
                println!("wrote {n} codes of {h}x{w}x{c} to {}", out.display());
                println!("wrote their labels to {}", app::labels_path(&out).display());
            })
            .context("encode failed"),
        Some(Command::Decode {
            checkpoint,
            codes,
            out,
            count,
            data,
        }) => app::decode(&adapter, &checkpoint, &data.dir(), &codes, &out, count)
            .map(|n| println!("decoded {n} codes into {}", out.display()))
            .context("decode failed"),
        Some(Command::Profile {
            model,
            steps,
            warmup,
            batch_size,
            trace,
            data,
        }) => {
            let mut config = TrainConfig::new(model);
            config.batch_size = batch_size;
            let opts = bench::ProfileOptions {
                adapter,
                config,
                data_dir: data.dir(),
                steps,
                warmup,
                trace: trace.clone(),
            };
            bench::profile(&opts)
                .map(|r| {
                    print!("{}", r.text());
                    if let Some(t) = trace {
                        println!("trace written to {}", t.display());
                    }
                })
                .context("profile failed")
        }
        Some(Command::Bench {
            model,
            epochs,
            batch_size,
            train_limit,
            json,
            data,
        }) => bench_cmd(adapter, model, epochs, batch_size, train_limit, json, data),
        Some(Command::Devices) => {
            print!("{}", app::devices());
            Ok(())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Stopped by a signal: what was saved and how to resume; 128 + the signal.
            if let Some(wgsl_autoencoder::Error::Interrupted { signal, .. }) = e.downcast_ref() {
                eprintln!("{}", message(&e));
                return ExitCode::from(interrupt::exit_code(*signal));
            }
            eprintln!("error: {}", message(&e));
            ExitCode::from(1)
        }
    }
}
