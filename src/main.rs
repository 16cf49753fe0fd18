//! The command line: parse, call the library, print.
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use wgsl_autoencoder::app;
use wgsl_autoencoder::data;
use wgsl_autoencoder::gpu::AdapterChoice;
use wgsl_autoencoder::model::ModelKind;
use wgsl_autoencoder::ops::adam::AdamConfig;
use wgsl_autoencoder::train::run::{self, Event, RunOptions};
use wgsl_autoencoder::train::TrainConfig;

#[derive(Parser)]
#[command(
    name = "wgsl-autoencoder",
    version,
    about = "Train the Keras autoencoders on MNIST with hand-written WGSL compute shaders.",
    args_conflicts_with_subcommands = true
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
    /// Which autoencoder.
    #[arg(long, value_enum, default_value = "conv")]
    model: ModelKind,
    /// Epochs (default: the seed's, 100 for conv and deep, 50 for dense).
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long, default_value_t = 256)]
    batch_size: u32,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Seeds the initial weights, the shuffles and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Denoising: inputs + F * N(0, 1), clipped to [0, 1]; targets stay clean.
    #[arg(long, default_value_t = 0.0)]
    noise: f32,
    /// The run folder (default: runs/<date-time>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue a run: its folder or a checkpoint file.
    #[arg(long)]
    resume: Option<PathBuf>,
    #[command(flatten)]
    data: DataArg,
}

fn train(adapter: AdapterChoice, a: TrainArgs) -> Result<()> {
    let mut config = TrainConfig::new(a.model);
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
    let mut epochs = 0;
    let dir = run::train(&opts, &mut |e| match e {
        Event::Started {
            adapter,
            run_dir,
            train_count,
            test_count,
            steps,
            epochs: n,
            first_epoch,
        } => {
            epochs = n;
            println!("adapter: {adapter}");
            println!("run folder: {}", run_dir.display());
            println!(
                "{} on {train_count} training and {test_count} test images, {steps} steps per epoch, epochs {first_epoch}..={n}",
                opts.config.model.name()
            );
        }
        Event::Progress {
            epoch,
            done,
            steps,
            images_per_s,
        } => {
            let b = bar.get_or_insert_with(|| {
                let b = ProgressBar::new(steps as u64).with_style(style.clone());
                b.set_prefix(format!("epoch {epoch}/{epochs}"));
                b
            });
            b.set_position(done as u64);
            b.set_message(format!("{images_per_s:.0} images/s"));
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Some(Command::Devices) => {
            print!("{}", app::devices());
            Ok(())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
