//! Everything a run settles before the GPU does any work: the settings (a new run's, or a
//! resumed checkpoint's with what a resume may change), the data, the model, and the checks
//! that the checkpoint belongs to them.
use super::folder::{self, Claim, RunDir};
use super::{Control, RunOptions};
use crate::checkpoint::{self, Checkpoint};
use crate::data::{self, DataRecord, Dataset};
use crate::gpu::{DeviceChoice, FoldChoice, FoldSet, FoldsBy, Gpu};
use crate::model::{Model, ModelChoice, ModelKind};
use crate::train::{self, tune, TrainConfig, Trainer};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The settings a user asked for. `None`: the model's default for a new run, the
/// checkpoint's for a resumed one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainRequest {
    pub model: Option<ModelChoice>,
    /// `--code-layer`.
    pub code_layer: Option<String>,
    pub epochs: Option<usize>,
    pub batch_size: Option<u32>,
    pub lr: Option<f32>,
    pub seed: Option<u64>,
    pub train_limit: Option<usize>,
    pub noise: Option<f32>,
}

impl TrainRequest {
    /// Every setting of `cfg`, asked for explicitly.
    pub fn from_config(cfg: &TrainConfig) -> Self {
        TrainRequest {
            model: Some(cfg.model.clone()),
            code_layer: cfg.code_layer.clone(),
            epochs: Some(cfg.epochs),
            batch_size: Some(cfg.batch_size),
            lr: Some(cfg.adam.lr),
            seed: Some(cfg.seed),
            train_limit: cfg.train_limit,
            noise: Some(cfg.noise),
        }
    }

    /// A new run's settings: what was asked, the model's defaults for the rest.
    pub fn config(&self) -> TrainConfig {
        let model = self.model.clone();
        let mut c = TrainConfig::new(model.unwrap_or(ModelChoice::Builtin(ModelKind::Conv)));
        c.code_layer = self.code_layer.clone();
        c.epochs = self.epochs.unwrap_or(c.epochs);
        c.batch_size = self.batch_size.unwrap_or(c.batch_size);
        c.adam.lr = self.lr.unwrap_or(c.adam.lr);
        c.seed = self.seed.unwrap_or(c.seed);
        c.train_limit = self.train_limit.or(c.train_limit);
        c.noise = self.noise.unwrap_or(c.noise);
        c
    }

    /// A resumed run's settings: the checkpoint's, with more epochs or a new learning rate
    /// (a fine-tune, recorded in config.json) if asked. Any other setting that differs from
    /// the run's is refused, by its flag: the run it would make is no continuation.
    fn resumed(&self, ck: &Checkpoint, path: &Path) -> Result<TrainConfig> {
        let c = &ck.config;
        if let Some(asked) = self.model.as_ref().filter(|m| !m.same_as(&c.model)) {
            let describe = |m: &ModelChoice| match m {
                ModelChoice::Builtin(k) => format!("the built-in {} model", k.name()),
                ModelChoice::Keras(f) => format!("the model of {}", f.path),
            };
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                detail: format!(
                    "it holds a {} model ({}), but --model {} ({}) was asked for; a file \
                     counts as the same model only with the same text. To continue it, drop \
                     --model (the checkpoint carries its model); to train the other model, \
                     leave out --resume",
                    c.model.name(),
                    describe(&c.model),
                    asked.name(),
                    describe(asked)
                ),
            });
        }
        let fixed = [
            (
                "--code-layer",
                differs(self.code_layer.clone().map(Some), c.code_layer.clone()),
            ),
            ("--batch-size", differs(self.batch_size, c.batch_size)),
            ("--seed", differs(self.seed, c.seed)),
            ("--noise", differs(self.noise, c.noise)),
            (
                "--train-limit",
                differs(self.train_limit.map(Some), c.train_limit),
            ),
        ];
        if let Some((flag, (asked, had))) = fixed.into_iter().find_map(|(f, d)| d.map(|d| (f, d))) {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                detail: format!(
                    "{flag} {asked} differs from the run's {had}. A resumed run keeps its \
                     settings; only --epochs and --lr may change. Drop {flag}, or leave out \
                     --resume to start a new run"
                ),
            });
        }
        let mut c = c.clone();
        c.epochs = self.epochs.unwrap_or(c.epochs);
        c.adam.lr = self.lr.unwrap_or(c.adam.lr);
        Ok(c)
    }
}

/// `Some((asked, had))` when a setting was asked for and differs from the run's.
fn differs<T: PartialEq + std::fmt::Debug>(asked: Option<T>, had: T) -> Option<(String, String)> {
    let show = |v: &T| match format!("{v:?}").as_str() {
        "None" => "none".to_string(),
        s => s
            .trim_start_matches("Some(")
            .trim_end_matches(')')
            .to_string(),
    };
    asked.filter(|a| *a != had).map(|a| (show(&a), show(&had)))
}

/// A run's settled settings, data and model, and where it starts.
pub(super) struct Setup {
    pub cfg: TrainConfig,
    pub data: Dataset,
    /// The dataset's files as this run records them.
    pub data_record: DataRecord,
    pub model: Model,
    /// Steps per epoch.
    pub steps: usize,
    /// The checkpoint a resumed run continues, and its path.
    pub resumed: Option<(Checkpoint, PathBuf)>,
    /// The resumed checkpoint is older than its folder's latest: the run goes on in a new
    /// folder, and the old one keeps its later epochs.
    pub branch: bool,
    /// The learning rate before a resume changed it.
    pub lr_before: Option<f32>,
}

impl Setup {
    pub fn prepare(opts: &RunOptions, ctl: &Control) -> Result<Self> {
        if ctl.checkpoint_every == Some(0) {
            return Err(Error::Config(
                "--checkpoint-every must be at least 1 (steps)".into(),
            ));
        }
        let resumed = match &opts.resume {
            Some(p) => {
                let path = folder::checkpoint_path(p);
                Some((checkpoint::load(&path)?, path))
            }
            None => None,
        };
        let cfg = match &resumed {
            Some((ck, path)) => opts.request.resumed(ck, path)?,
            None => opts.request.config(),
        };
        cfg.validate()?;
        let data_dir = data_dir(opts, resumed.as_ref().map(|r| &r.0));
        let data_record = DataRecord::of(&data_dir)?;
        if let Some(recorded) = resumed.as_ref().and_then(|(ck, _)| ck.data.as_ref()) {
            recorded.check_same(&data_record)?;
        }
        let data = data::load(&data_dir, cfg.train_limit)?;
        let input = data.features();
        let model = cfg.build_model(input)?;
        let steps = train::batches(data.train.images.count, cfg.batch_size).len();
        let branch = match &resumed {
            Some((ck, path)) => is_branch(ck, path)?,
            None => false,
        };
        let lr_before = resumed
            .as_ref()
            .map(|(ck, _)| ck.config.adam.lr)
            .filter(|lr| *lr != cfg.adam.lr);
        let setup = Setup {
            cfg,
            data,
            data_record,
            model,
            steps,
            resumed,
            branch,
            lr_before,
        };
        if let Some((ck, path)) = &setup.resumed {
            setup.check_resume(ck, path)?;
        }
        setup.check_folder(opts)?;
        Ok(setup)
    }

    /// The checkpoint must come from this model, data and epoch length, with epochs left.
    fn check_resume(&self, ck: &Checkpoint, path: &Path) -> Result<()> {
        let (input, count) = (self.model.input, self.data.train.images.count);
        if ck.input != input || ck.train_count != count {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                detail: format!(
                    "it was trained on {} {}x{} images; this dataset has {count} {}x{}. Pass \
                     the --data and --train-limit of the run it comes from",
                    ck.train_count, ck.input.h, ck.input.w, input.h, input.w
                ),
            });
        }
        if ck.step >= self.steps {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                detail: format!(
                    "it was taken at step {} of an epoch of {} steps; it does not belong to \
                     this run's settings",
                    ck.step, self.steps
                ),
            });
        }
        if ck.state.epoch >= self.cfg.epochs {
            return Err(Error::Config(format!(
                "the checkpoint has already done {} of {} epochs; pass a larger --epochs to continue",
                ck.state.epoch, self.cfg.epochs
            )));
        }
        Ok(())
    }

    /// Opens the adapter, uploads both splits and builds the trainer, its weights fresh or
    /// the checkpoint's.
    pub fn trainer(&self, device: &DeviceChoice) -> Result<(Gpu, Trainer)> {
        let mut gpu = Gpu::new(device)?;
        self.settle_folds(&mut gpu, device.folds)?;
        let mut trainer = Trainer::for_dataset(&gpu, self.model.clone(), &self.cfg, &self.data)?;
        match &self.resumed {
            Some((ck, _)) => trainer.restore(&gpu, &ck.state)?,
            None => trainer.init(&gpu)?,
        }
        Ok((gpu, trainer))
    }

    /// The folds, where `--folds auto` leaves them to us: a resumed run's, as its folder's
    /// config.json records them for this adapter and kernel set (so that it goes on with the
    /// very kernels it ran), else timed if the device asks it (`train::tune`). `--folds tune`
    /// times them again.
    fn settle_folds(&self, gpu: &mut Gpu, choice: FoldChoice) -> Result<()> {
        let recorded = self
            .resumed
            .as_ref()
            .and_then(|(_, path)| recorded_folds(path, gpu));
        match (choice, recorded) {
            (FoldChoice::Auto, Some((folds, layer_folds))) => {
                gpu.folds = folds;
                gpu.layer_folds = layer_folds;
                gpu.folds_by = FoldsBy::ResumedRun;
                Ok(())
            }
            _ => tune::settle(gpu, choice, &self.model, &self.cfg, &self.data.train.images),
        }
    }

    /// Where the run goes: the resumed run's own folder (unless it branches off an earlier
    /// checkpoint, or `--out` names another), else `--out`, else a new one.
    fn folder_plan<'p>(&'p self, opts: &'p RunOptions) -> (Option<&'p Path>, Claim) {
        let resumed_dir = match &self.resumed {
            Some((_, ck)) if !self.branch => Some(ck.parent().unwrap_or(Path::new("."))),
            _ => None,
        };
        let out = Claim::Out {
            overwrite: opts.overwrite,
        };
        match (resumed_dir, opts.out_dir.as_deref()) {
            (Some(r), Some(o)) if !same_dir(r, o) => (Some(o), out),
            (Some(r), _) => (Some(r), Claim::Resume),
            (None, Some(o)) => (Some(o), out),
            (None, None) => (None, Claim::Fresh),
        }
    }

    /// Refuses, before any work, a folder that another run's files or lock would refuse.
    pub fn check_folder(&self, opts: &RunOptions) -> Result<()> {
        let (dir, claim) = self.folder_plan(opts);
        folder::check(dir, claim)
    }

    /// Claims the run folder for this process (see [`folder::claim`]).
    pub fn run_dir(&self, opts: &RunOptions) -> Result<RunDir> {
        let (dir, claim) = self.folder_plan(opts);
        folder::claim(dir, claim)
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The folds of the last session in the config.json beside the checkpoint at `path` (and
/// its layers' own variants, if any), when it ran on this adapter (name, backend, driver) and
/// kernel set.
fn recorded_folds(path: &Path, gpu: &Gpu) -> Option<(FoldSet, BTreeMap<String, FoldSet>)> {
    let text = std::fs::read(path.parent()?.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let last = config.get("sessions")?.as_array()?.last()?;
    let adapter = last.get("adapter")?;
    let same = |key: &str, value: String| adapter.get(key)?.as_str().map(|s| s == value);
    let same_device = same("name", gpu.info.name.clone())?
        && same("backend", format!("{:?}", gpu.info.backend))?
        && same("driver_info", gpu.info.driver_info.clone())?
        && last.get("kernels")?.as_str()? == gpu.kernels.name();
    if !same_device {
        return None;
    }
    let folds = serde_json::from_value(last.get("folds")?.clone()).ok()?;
    let layer_folds = match last.get("layer_folds") {
        Some(v) => serde_json::from_value(v.clone()).ok()?,
        None => BTreeMap::new(),
    };
    Some((folds, layer_folds))
}

/// `--data`, else the folder the resumed run recorded, else the shipped MNIST.
fn data_dir(opts: &RunOptions, resumed: Option<&Checkpoint>) -> PathBuf {
    opts.data_dir
        .clone()
        .or_else(|| {
            resumed
                .and_then(|ck| ck.data.as_ref())
                .map(|d| d.dir.clone())
        })
        .unwrap_or_else(data::default_dir)
}

/// Whether a resume from the checkpoint at `path` must go on in a new folder. A folder's own
/// `checkpoint.safetensors` resumes in place. Another file does only in a run folder whose
/// latest checkpoint is no later: a checkpoint kept elsewhere has neighbours that are not
/// ours to overwrite, and resuming an earlier one in place would overwrite the later epochs.
fn is_branch(ck: &Checkpoint, path: &Path) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let latest = dir.join(folder::CHECKPOINT);
    if same_dir(&latest, path) {
        return Ok(false);
    }
    if !dir.join("config.json").is_file() || !latest.is_file() {
        return Ok(true);
    }
    // An unreadable latest checkpoint is no later epoch to protect, but still: branch.
    Ok(match checkpoint::load(&latest) {
        Ok(l) => (l.state.epoch, l.step) > (ck.state.epoch, ck.step),
        Err(_) => true,
    })
}
