"""Spleeter config: every parameter of seed 003 (the PyTorch Spleeter port) under its own name and default.

Seed names that the common settings already have under another canonical name stay aliases: `lr` is
`learning_rate`, `batch_size` is `train_batch_size`, `wd` is `weight_decay`, `amp` is `enable_amp`. No torch here:
validating a config must stay cheap (the form re-validates on every submit).
"""

from __future__ import annotations

import getpass
from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, model_validator

from workbench.config.common import CommonTrainingSettings, Learner, NegSampleArgs, StrictModel, aliased
from workbench.config.rules import Problems

def _current_user() -> str:
    # the seed's example name would make every run look like one stranger's; the login is the honest default
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container user without a passwd entry)
        return "unknown"


STEM_NAMES: dict[int, tuple[str, ...]] = {
    2: ("vocals", "accompaniment"),
    4: ("vocals", "drums", "bass", "other"),
}


class SyntheticSongs(StrictModel):
    """Procedurally generated songs, used when `train_manifest` is empty (no download needed)."""

    songs: int = Field(40, ge=1, description="Number of generated training songs.")
    valid_songs: int = Field(6, ge=1, description="Number of generated validation songs (a separate draw).")
    duration: float = Field(
        25.0,
        gt=0,
        description="Length of each generated song in seconds; must be at least chunk_duration + 2*margin.",
    )
    seed: int = Field(
        0,
        description="Seed of the song generator; songs with the same seed, count, duration and sample rate are "
        "generated once and shared by every run through the cache folder.",
    )


class SpleeterConfig(CommonTrainingSettings):
    """Spleeter source separation (deezer/spleeter's U-Net per stem), trained from a song manifest."""

    task: Literal["spleeter"] = Field("spleeter", description="The task: Spleeter source separation.")
    mode: Literal["train", "process_data", "fast_train"] = Field(
        "train",
        description="`train`: decode audio and compute spectrograms while training (simple, but easily IO-bound). "
        "`process_data`: first save every training chunk's spectrogram and every validation excerpt as tensors "
        "(progress on the dashboard), then train from them with no audio decoding; needs nproc_per_node = 1. "
        "`fast_train`: train from the tensors a process_data run saved, opening no audio file at all. process_data "
        "fixes the songs and stems, sample_rate, frame_length, frame_step, F, chunk_duration, margin, "
        "n_chunks_per_song and valid_max_duration; the batch size, T, epochs, optimizer and model stay free.",
    )
    processed_data: str = Field(
        "",
        description="fast_train: the folder of a process_data run's output (its events name it). Empty: the one a "
        "process_data run with the same data and fixed settings left under cache_dir.",
    )

    # -- data ------------------------------------------------------------------------------------------------
    train_manifest: str = Field(
        "manifest.csv",
        description="Training set manifest (CSV of mix_path, vocal_path, instrumental_path, duration, samplerate; "
        "with or without a header), made by `workbench data manifest DIR`. A relative path is looked up in "
        "train_dataset. Empty: generate synthetic songs (see `synthetic`).",
    )
    train_dataset: str = Field(
        "dataset", description="Data folder: the manifest's audio paths are relative to it."
    )
    valid_manifest: str = Field(
        "",
        description="Validation manifest (same format; relative paths in valid_dataset). Empty: hold out "
        "1 - train_ratio of the training songs (or use synthetic.valid_songs for generated songs).",
    )
    valid_dataset: str = Field("", description="Data folder of valid_manifest; empty = train_dataset.")
    synthetic: SyntheticSongs = Field(
        default_factory=SyntheticSongs,
        description="Generated songs used when train_manifest is empty: songs, valid_songs, duration, seed.",
    )
    cache_dir: str = Field(
        "",
        description="Folder for generated songs, process_data spectrogram caches and saved tensors, shared by runs "
        "and keyed by the data and STFT settings. Empty: $WORKBENCH_HOME/cache/spleeter (./.workbench/cache/spleeter).",
    )
    stems: Literal[2, 4] = Field(
        2,
        description="2: vocals / accompaniment (manifest columns vocal_path, instrumental_path). 4: vocals, drums, "
        "bass, other (manifest with a header naming vocals_path, drums_path, bass_path, other_path).",
    )
    margin: float = Field(0.5, ge=0, description="Seconds skipped at both ends of every song when placing chunks.")
    chunk_duration: float = Field(
        20.0, gt=0, description="Length in seconds of each chunk read from a song (a random T-frame crop is taken from it)."
    )
    sample_rate: int = Field(
        44100, ge=1000, description="Sample rate in Hz; audio at another rate is resampled (with a warning per file)."
    )
    frame_length: int = Field(4096, ge=16, description="STFT frame length in samples (periodic Hann window).")
    frame_step: int = Field(1024, ge=1, description="STFT hop between frames in samples.")
    T: int = Field(512, ge=1, description="Number of STFT frames in one network input (512 x 1024/44100 = 11.9 s).")
    F: int = Field(
        1024, ge=1, description="Number of frequency bins kept, from 0 Hz up (1024 of 2049 = 0-11 kHz at 44.1 kHz)."
    )
    n_chunks_per_song: int = Field(
        15, ge=1, description="Chunks per song and epoch, spaced evenly between the margins (1 = the song's centre)."
    )
    num_workers: int = Field(
        2,
        ge=0,
        description="DataLoader worker processes that decode audio in `train` mode (0 = in the training process).",
    )

    # -- model -----------------------------------------------------------------------------------------------
    conv_activation: Literal["leaky_relu", "elu"] = Field(
        "leaky_relu",
        description="Encoder activation: LeakyReLU(0.2) as in Spleeter's 2-stem model, or ELU (its 4-stem/musdb configs).",
    )
    deconv_activation: Literal["relu", "elu"] = Field(
        "relu", description="Decoder activation: ReLU (Spleeter default) or ELU (its 4-stem/musdb configs)."
    )
    batch_norm_momentum: float = Field(
        0.01,
        gt=0,
        le=1,
        description="Weight of each batch in the batch-norm running statistics used for validation and separation. "
        "0.01 is Spleeter's (Keras momentum 0.99), made for 10^5+ steps; runs of a few hundred steps need ~0.1, or "
        "validation sees statistics that are still mostly their initial values.",
    )

    # -- optimisation (seed 003 names; canonical aliases from the common settings) -------------------------
    epochs: int = Field(10, ge=1, description="Maximum number of training epochs (songs x n_chunks_per_song items each).")
    train_batch_size: int = Field(
        20,
        ge=1,
        validation_alias=aliased("train_batch_size"),
        description="Batch size per process (per GPU). Alias: `batch_size`.",
    )
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop", "adagrad"] = Field(
        "adam", description="Optimizer. `momentum` is SGD/RMSprop momentum and Adam's beta1; `dampening` is SGD's."
    )
    loss: Literal["l1", "l2"] = Field(
        "l1",
        description="Loss between mask x mixture and each stem's magnitude: l1 (mean absolute error, Spleeter's "
        "L1_mask) or l2 (mean squared error); summed over stems.",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="Optimizer momentum (SGD, RMSprop; beta1 for Adam/AdamW).")
    dampening: float = Field(0.0, ge=0, le=1, description="Dampening for SGD momentum.")
    learning_rate: float = Field(
        1e-5, gt=0, validation_alias=aliased("learning_rate"), description="Learning rate. Alias: `lr`."
    )
    lr_decay: float = Field(
        0.0,
        ge=0,
        description="Learning-rate decay per optimizer step: lr_t = lr / (1 + t * lr_decay) (Adagrad's rule, "
        "applied to every optimizer; 0 = constant).",
    )
    weight_decay: float = Field(
        1e-5, ge=0, validation_alias=aliased("weight_decay"), description="Weight decay (L2 penalty). Alias: `wd`."
    )
    enable_amp: bool = Field(
        False,
        validation_alias=aliased("enable_amp"),
        description="Mixed precision training (float16 on CUDA, bfloat16 on CPU); not recommended, it costs "
        "accuracy. Alias: `amp`.",
    )
    scheduler_factor: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Reduce-on-plateau: factor applied to the learning rate after scheduler_patience evaluations "
        "without improvement of valid/si_sdr_vocals (1.0 = off, Spleeter's constant rate).",
    )
    print_freq: int = Field(10, ge=1, description="Log train/loss, train/lr and train/samples_per_s every this many steps.")

    # -- evaluation ------------------------------------------------------------------------------------------
    mask_extension: Literal["zeros", "average"] = Field(
        "zeros",
        description="Mask for the bins above F when separating: zeros (Spleeter default: the stems lose everything "
        "above F) or average (each frame's mean mask over the F kept bins).",
    )
    valid_max_duration: float = Field(
        30.0,
        ge=0,
        description="Seconds of each validation song that are separated and scored (its centre); 0 = the whole song.",
    )

    # -- checkpoints, resume and bookkeeping -----------------------------------------------------------------
    model_dir: str = Field(
        "model",
        description="Folder in the run directory where the final separation model (weights + settings) is written "
        "and offered for download.",
    )
    load_optimizer: bool = Field(
        True, description="When resuming or forking, also restore the optimizer state (e.g. Adam's moments)."
    )
    start: int = Field(
        0,
        ge=0,
        description="Epoch to start counting from: 0 continues from the checkpoint's epoch on resume (and starts at "
        "0 otherwise); a larger value starts there (e.g. a fork that continues another run's epochs).",
    )
    load_model: bool = Field(
        True,
        description="Start from the weights of the checkpoint this run resumes or forks from (True), or from "
        "freshly initialised weights (False).",
    )
    seed: int = Field(37, description="Random seed for Python, NumPy and PyTorch.")
    keep_ckpt: int = Field(
        1, ge=1, description="Number of most recent checkpoints kept; the best by valid/si_sdr_vocals is kept too."
    )
    trainer: str = Field(
        default_factory=lambda: _current_user(),
        description="Name of the person training, shown as the run's owner. Defaults to the account running the "
        "workbench.",
    )
    clean_logs: bool = Field(
        True,
        description="Keep the console and train.log short: one line per print_freq steps and per evaluation "
        "(False: also one line per optimizer step).",
    )
    nproc_per_node: int = Field(
        1,
        ge=1,
        description="Number of processes (GPUs) per node; more than 1 trains with DistributedDataParallel through "
        "torchrun. Must be 1 in process_data mode.",
    )

    # -- common settings that do not apply to this task ------------------------------------------------------
    not_used: ClassVar[dict[str, str]] = {
        "learner": "its optimizer is the `optimizer` setting",
        "train_neg_sample_args": "no negative sampling in source separation",
        "require_pow": "it has no embedding regulariser",
        "min_std": "it standardises nothing",
    }
    learner: Learner = Field("adam", description="Not used by spleeter: its optimizer is the `optimizer` setting.")
    train_neg_sample_args: NegSampleArgs | None = Field(
        None, description="Not used by spleeter (no negative sampling in source separation)."
    )
    require_pow: bool = Field(False, description="Not used by spleeter (it has no embedding regulariser).")
    min_std: float = Field(1e-8, gt=0, description="Not used by spleeter (it standardises nothing).")

    @property
    def stem_names(self) -> tuple[str, ...]:
        return STEM_NAMES[self.stems]

    @property
    def chunk_frames(self) -> int:
        """STFT frames in one chunk (center=False): the T-frame crop is drawn from these."""
        return (round(self.chunk_duration * self.sample_rate) - self.frame_length) // self.frame_step + 1

    @model_validator(mode="after")
    def _spleeter_rules(self, info: ValidationInfo) -> SpleeterConfig:
        """Spleeter's own config checks plus the seed's process_data rule, all reported together."""
        problems = Problems(self, info)
        ok, add = problems.readable, problems.add
        if ok("F", "frame_length") and self.F > self.frame_length // 2 + 1:
            add("F", f"F ({self.F}) must be <= frame_length/2 + 1 = {self.frame_length // 2 + 1} bins")
        if ok("frame_step", "frame_length") and self.frame_step > self.frame_length:
            add("frame_step", f"frame_step ({self.frame_step}) must not exceed frame_length ({self.frame_length})")
        if ok("chunk_duration", "sample_rate", "frame_length", "frame_step", "T"):
            frames = (self.chunk_duration * self.sample_rate - self.frame_length) / self.frame_step
            if frames < self.T:
                add("T", f"(chunk_duration*sample_rate - frame_length)/frame_step = {frames:.1f} must be >= T "
                    f"({self.T}); raise chunk_duration or lower T")
        if ok("mode", "nproc_per_node") and self.mode == "process_data" and self.nproc_per_node != 1:
            add("nproc_per_node", "process_data mode runs in one process: set nproc_per_node to 1")
        shortest = self.chunk_duration + 2 * self.margin
        if ok("train_manifest", "synthetic.duration", "chunk_duration", "margin") and not self.train_manifest and self.synthetic.duration < shortest:
            add("synthetic.duration", f"generated songs of {self.synthetic.duration} s are shorter than "
                f"chunk_duration + 2*margin = {shortest} s")
        problems.raise_if_any()
        return self
