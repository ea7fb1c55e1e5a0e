"""Speech units for a new language: k-means over the features of one layer of a HuBERT checkpoint, saved as a
[`SpiritLMSpeechTokenizer`] repo with a k-means quantizer (`spiritlm train-units`).

The features are the tokenizer's own (`hubert_layer_features` of the HuBERT truncated to the chosen layer, audio
loaded, resampled and chunked as `encode_units` does), so the saved tokenizer quantizes exactly what was clustered.
K-means is scikit-learn's `MiniBatchKMeans` (extra `[train]`), fed one batch of whole files per `partial_fit` step,
files shuffled per epoch from the seed. After every step its state (centroids, counts, step, random generator) is
checkpointed, so a killed run resumes to the centroids of an uninterrupted one.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, HubertConfig, HubertModel

from ..audio import find_audio_files, prepare_audio, read_audio_info
from ..configuration_spiritlm import SpiritLMSpeechTokenizerConfig
from ..training_runs import load_checkpoint, publish, save_checkpoint, training_output
from .hubert import hubert_layer_features
from .modeling_speech_tokenizer import SpiritLMSpeechTokenizer


# Frames (25 Hz) per k-means step: 400 s of audio, 30 MB of 768-wide float64 features.
DEFAULT_BATCH_FRAMES = 10_000
_HUBERT_DROPOUTS = (
    "hidden_dropout",
    "activation_dropout",
    "attention_dropout",
    "feat_proj_dropout",
    "final_dropout",
    "layerdrop",
    "mask_time_prob",
    "mask_feature_prob",
)


@dataclass
class UnitTrainingResult:
    """What `train_units` did: k-means steps run so far, frames clustered, files skipped (shorter than the minimum
    chunk), whether the repo was written (`False` when `max_steps` stopped the run first), and the step it resumed
    from (0 for a fresh run)."""

    steps: int
    frames: int
    skipped_files: list[str]
    finished: bool
    resumed_from: int = 0


def speech_tokenizer_for_layer(hubert_dir: str | os.PathLike, layer: int, num_units: int) -> SpiritLMSpeechTokenizer:
    """
    A [`SpiritLMSpeechTokenizer`] holding the HuBERT checkpoint `hubert_dir` (a transformers `HubertModel` or
    `HubertFor*` folder) truncated to its first `layer` layers, and a k-means quantizer of `num_units` zero centroids.
    """
    hubert_dir = Path(hubert_dir)
    if not (hubert_dir / "config.json").is_file():
        raise FileNotFoundError(f"--hubert {hubert_dir} is not a transformers checkpoint folder (no config.json)")
    found = AutoConfig.from_pretrained(hubert_dir)
    if not isinstance(found, HubertConfig):
        raise ValueError(
            f"--hubert {hubert_dir} is a {found.model_type!r} checkpoint, not HuBERT; give a transformers HubertModel "
            "checkpoint folder (e.g. a save_pretrained of facebook/hubert-base-ls960)"
        )
    if num_units < 2:
        raise ValueError(f"--units {num_units}: k-means needs at least 2 units")
    if not 1 <= layer <= found.num_hidden_layers:
        raise ValueError(f"--layer {layer} is out of range: {hubert_dir} has layers 1 to {found.num_hidden_layers}")
    hubert_config = found.to_dict()
    hubert_config.update(dict.fromkeys(_HUBERT_DROPOUTS, 0.0), num_hidden_layers=layer, apply_spec_augment=False)
    # from_dict reports a HuBERT layout the tokenizer cannot run (e.g. HuBERT-large's) as a ValueError.
    config = SpiritLMSpeechTokenizerConfig.from_dict(
        {"hubert_config": hubert_config, "quantizer_type": "kmeans", "num_hubert_units": num_units}
    )
    model = SpiritLMSpeechTokenizer(config)
    hubert = HubertModel.from_pretrained(hubert_dir, config=config.hubert_config)
    model.hubert.load_state_dict(hubert.state_dict())
    return model.eval()


@torch.inference_mode()
def file_features(speech_tokenizer: SpiritLMSpeechTokenizer, path: str | os.PathLike) -> torch.Tensor:
    """`(frames, hidden_size)` float32 features of the audio file at `path`, those `speech_tokenizer` quantizes: its
    100 s chunks concatenated, a final chunk under `min_chunk_samples` skipped (no frames for a shorter file)."""
    config = speech_tokenizer.config
    waveform = prepare_audio([str(path)], None, config.sampling_rate)[0].to(speech_tokenizer.device)
    parts = []
    for start in range(0, len(waveform), config.max_chunk_samples):
        chunk = waveform[start : start + config.max_chunk_samples]
        if len(chunk) >= config.min_chunk_samples:
            lengths = torch.tensor([len(chunk)], device=chunk.device)
            features, frame_lengths = hubert_layer_features(speech_tokenizer.hubert, chunk[None], lengths)
            parts.append(features[0, : int(frame_lengths[0])].float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, config.hubert_config.hidden_size)


def plan_batches(frame_estimates: Sequence[float], seed: int, epoch: int, batch_frames: int) -> list[list[int]]:
    """
    File indices of each k-means step of `epoch`: the files in an order shuffled from `(seed, epoch)`, cut into
    consecutive groups of at least `batch_frames` (estimated) frames, the last group taking the remainder.
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(frame_estimates)).tolist()
    batches, current, frames = [], [], 0.0
    for index in order:
        current.append(index)
        frames += frame_estimates[index]
        if frames >= batch_frames:
            batches.append(current)
            current, frames = [], 0.0
    if current:
        batches.append(current)
    return batches


def _kmeans(num_units: int, seed: int, batch_frames: int, state: dict | None, tensors: dict | None):
    try:
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    except ImportError:
        raise ImportError(
            "spiritlm train-units needs scikit-learn: pip install 'transformers-spiritlm[train]'"
        ) from None
    kmeans = MiniBatchKMeans(n_clusters=num_units, random_state=seed, batch_size=batch_frames, n_init=1)
    if state is not None and "kmeans" in state:
        # The attributes `partial_fit` keeps between calls, as it left them (scikit-learn >= 1.2).
        saved = state["kmeans"]
        kmeans.cluster_centers_ = tensors["cluster_centers"].numpy().copy()
        kmeans._counts = tensors["counts"].numpy().copy()
        kmeans.n_steps_, kmeans._n_since_last_reassign = saved["n_steps"], saved["n_since_last_reassign"]
        kmeans._batch_size, kmeans.n_features_in_ = saved["batch_size"], kmeans.cluster_centers_.shape[1]
        kmeans._n_features_out, kmeans._n_threads = num_units, _openmp_effective_n_threads()
        random_state = np.random.RandomState()
        random_state.set_state(("MT19937", tensors["random_keys"].numpy().astype(np.uint32), *saved["random_state"]))
        kmeans._random_state = random_state
    return kmeans


def _kmeans_checkpoint(kmeans) -> tuple[dict[str, torch.Tensor], dict]:
    _, keys, position, has_gauss, cached_gaussian = kmeans._random_state.get_state()
    tensors = {
        "cluster_centers": torch.from_numpy(kmeans.cluster_centers_),
        "counts": torch.from_numpy(kmeans._counts),
        "random_keys": torch.from_numpy(keys.astype(np.int64)),
    }
    state = {
        "n_steps": int(kmeans.n_steps_),
        "n_since_last_reassign": int(kmeans._n_since_last_reassign),
        "batch_size": int(kmeans._batch_size),
        "random_state": [int(position), int(has_gauss), float(cached_gaussian)],
    }
    return tensors, state


def train_units(
    audio_dir: str | os.PathLike,
    hubert_dir: str | os.PathLike,
    layer: int,
    num_units: int,
    output: str | os.PathLike,
    seed: int = 0,
    epochs: int = 1,
    batch_frames: int = DEFAULT_BATCH_FRAMES,
    max_steps: int | None = None,
    device: str | torch.device = "cpu",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> UnitTrainingResult:
    """
    Learns `num_units` speech units from the audio files under `audio_dir` and writes a speech tokenizer repo to
    `output` (a folder `SpiritLMSpeechTokenizer.from_pretrained` loads, and the processor uses).

    Args:
        audio_dir: folder searched recursively for wav / flac / ogg / mp3 files (any rate, mono or stereo).
        hubert_dir: a transformers HuBERT checkpoint folder (HuBERT-base layout: group-norm conv stack).
        layer: HuBERT layer whose output is clustered, 1 to its number of layers.
        num_units: K, the number of units (`[Hu0]` .. `[Hu{K-1}]`); give the same to the language model.
        seed: seeds the k-means initialisation, its reassignments and the file order of each epoch.
        epochs: passes over the audio.
        batch_frames: frames (25 per second at the official hop) per k-means step, whole files per step.
        max_steps: stop after this many steps in all, leaving the checkpoint to resume (the repo is not written).
        resume: continue from the checkpoint an earlier run of the same settings left beside `output`.
        force: replace an existing `output` and discard an earlier run's checkpoint.
    """
    if epochs < 1 or batch_frames < 1:
        raise ValueError(f"epochs ({epochs}) and batch_frames ({batch_frames}) must be positive")
    files = find_audio_files([audio_dir])
    output = Path(output)
    settings = {
        "audio": [str(path) for path in files],
        "hubert": str(Path(hubert_dir).resolve()),
        "layer": layer,
        "num_units": num_units,
        "seed": seed,
        "epochs": epochs,
        "batch_frames": batch_frames,
    }
    speech_tokenizer = speech_tokenizer_for_layer(hubert_dir, layer, num_units).to(device)
    frame_rate = speech_tokenizer.config.frame_rate
    estimates = []
    for path in files:
        samples, rate = read_audio_info(path)
        estimates.append(samples / rate * frame_rate)
    with training_output(output, resume=resume, force=force) as checkpoint:
        tensors, state = load_checkpoint(checkpoint, settings) or (None, None)
        kmeans = _kmeans(num_units, seed, batch_frames, state, tensors)
        done = state["step"] if state else 0
        frames, skipped = (state["frames"], state["skipped"]) if state else (0, [])
        # The first step seeds the K centroids from its frames (k-means++): it needs at least K.
        step_frames = max(batch_frames, num_units)
        plan = [batch for epoch in range(epochs) for batch in plan_batches(estimates, seed, epoch, step_frames)]
        for step in tqdm(range(done, len(plan)), initial=done, total=len(plan), desc="k-means", disable=not progress):
            if max_steps is not None and step >= max_steps:
                return UnitTrainingResult(step, frames, skipped, finished=False, resumed_from=done)
            features = []
            for index in plan[step]:
                found = file_features(speech_tokenizer, files[index])
                if len(found) == 0 and str(files[index]) not in skipped:
                    skipped.append(str(files[index]))
                features.append(found)
            batch = torch.cat(features).double().numpy()
            if step == 0 and len(batch) < num_units:
                raise ValueError(
                    f"the first k-means step has {len(batch)} HuBERT frames ({len(plan[0])} files), fewer than the "
                    f"{num_units} units it starts them from: give more audio or fewer units"
                )
            if len(batch):
                kmeans.partial_fit(batch)
            frames += len(batch)
            kmeans_tensors, kmeans_state = _kmeans_checkpoint(kmeans)
            progress_state = {"step": step + 1, "frames": frames, "skipped": skipped, "kmeans": kmeans_state}
            save_checkpoint(checkpoint, kmeans_tensors, {"settings": settings, **progress_state})

        centroids = torch.from_numpy(kmeans.cluster_centers_).float()
        with torch.no_grad():
            speech_tokenizer.quantizer.centroids.copy_(centroids)
        publish(output, lambda folder: speech_tokenizer.cpu().save_pretrained(folder))
        checkpoint.unlink()
    return UnitTrainingResult(len(plan), frames, skipped, finished=True, resumed_from=done)


__all__ = [
    "DEFAULT_BATCH_FRAMES",
    "UnitTrainingResult",
    "file_features",
    "plan_batches",
    "speech_tokenizer_for_layer",
    "train_units",
]
