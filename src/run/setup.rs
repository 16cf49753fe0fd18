//! Everything a run settles before the GPU does any work: the settings (a new run's, or a
//! resumed checkpoint's with what a resume may change), the data, the model, and the checks
//! that the checkpoint belongs to them.
use super::{folder, Control, RunOptions};
use crate::checkpoint::{self, Checkpoint};
use crate::data::{self, Dataset};
use crate::gpu::{AdapterChoice, Gpu};
use crate::model::{Features, Model, ModelKind};
use crate::train::{self, TrainConfig, Trainer};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The settings a user asked for. `None`: the model's default for a new run, the
/// checkpoint's for a resumed one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainRequest {
    pub model: Option<ModelKind>,
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
            model: Some(cfg.model),
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
        let mut c = TrainConfig::new(self.model.unwrap_or(ModelKind::Conv));
        c.epochs = self.epochs.unwrap_or(c.epochs);
        c.batch_size = self.batch_size.unwrap_or(c.batch_size);
        c.adam.lr = self.lr.unwrap_or(c.adam.lr);
        c.seed = self.seed.unwrap_or(c.seed);
        c.train_limit = self.train_limit.or(c.train_limit);
        c.noise = self.noise.unwrap_or(c.noise);
        c
    }

    /// A resumed run's settings: the checkpoint's, with more epochs if asked.
    fn resumed(&self, ck: &Checkpoint, path: &Path) -> Result<TrainConfig> {
        if let Some(asked) = self.model.filter(|m| *m != ck.model) {
            let (had, asked) = (ck.model.name(), asked.name());
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                detail: format!(
                    "it holds a {had} model, but --model {asked} was asked for. To continue \
                     it, drop --model (or pass --model {had}); to train a {asked} model, \
                     leave out --resume"
                ),
            });
        }
        let mut c = ck.config.clone();
        c.epochs = self.epochs.unwrap_or(c.epochs);
        Ok(c)
    }
}

/// A run's settled settings, data and model, and where it starts.
pub(super) struct Setup {
    pub cfg: TrainConfig,
    pub data: Dataset,
    pub data_dir: PathBuf,
    pub input: Features,
    pub model: Model,
    /// Steps per epoch.
    pub steps: usize,
    /// The checkpoint a resumed run continues, and its path.
    pub resumed: Option<(Checkpoint, PathBuf)>,
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
        let data = data::load(&opts.data_dir, cfg.train_limit)?;
        let input = data.features();
        let model = Model::new(cfg.model, input)?;
        let steps = train::batches(data.train.images.count, cfg.batch_size).len();
        let setup = Setup {
            cfg,
            data,
            data_dir: opts.data_dir.clone(),
            input,
            model,
            steps,
            resumed,
        };
        if let Some((ck, path)) = &setup.resumed {
            setup.check_resume(ck, path)?;
        }
        Ok(setup)
    }

    /// The checkpoint must come from this model, data and epoch length, with epochs left.
    fn check_resume(&self, ck: &Checkpoint, path: &Path) -> Result<()> {
        let (input, count) = (self.input, self.data.train.images.count);
        if ck.model != self.cfg.model || ck.input != input || ck.train_count != count {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                detail: format!(
                    "it was trained on {} {}x{} images; this dataset has {count} {}x{}. Pass \
                     the --data and --train-limit of the run it comes from",
                    ck.train_count, ck.input.h, ck.input.w, input.h, input.w
                ),
            });
        }
        if ck.step >= self.steps || ck.partial_losses.len() != ck.step {
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
    pub fn trainer(&self, adapter: &AdapterChoice) -> Result<(Gpu, Trainer)> {
        let gpu = Gpu::new(adapter)?;
        let mut trainer = Trainer::for_dataset(&gpu, self.model.clone(), &self.cfg, &self.data)?;
        match &self.resumed {
            Some((ck, _)) => trainer.restore(&gpu, &ck.state)?,
            None => trainer.init(&gpu)?,
        }
        Ok((gpu, trainer))
    }

    /// The run folder: `--out`, else the resumed checkpoint's folder, else a new one.
    pub fn run_dir(&self, opts: &RunOptions) -> Result<PathBuf> {
        let dir = match (&opts.out_dir, &self.resumed) {
            (Some(d), _) => folder::create(Some(d))?,
            (None, Some((_, ck))) => folder::create(Some(ck.parent().unwrap_or(Path::new("."))))?,
            (None, None) => folder::create(None)?,
        };
        folder::clean_temp_files(&dir);
        Ok(dir)
    }
}
