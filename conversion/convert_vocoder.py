"""Convert an official SPIRIT LM HiFi-GAN vocoder to a [`SpiritLMVocoder`] folder.

Input: `checkpoints/speech_tokenizer/hifigan_spiritlm_base/` or `.../hifigan_spiritlm_expressive_w2v2/`
(`config.json`, `generator.pt`, `speakers.txt`, and `styles.txt` for BASE). Output: `config.json` +
`model.safetensors`, normally the `vocoder/` subfolder of a converted repo. Weight norm is folded into plain weights
here, so inference needs none; `generator.pt` is read with `torch.load(..., weights_only=True)`.

    python conversion/convert_vocoder.py --input-dir CKPT/speech_tokenizer/hifigan_spiritlm_base --output-dir OUT/vocoder
"""

import argparse
import pickle
import sys
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError

from transformers_spiritlm.configuration_spiritlm import SpiritLMVocoderConfig
from transformers_spiritlm.conversion import read_json
from transformers_spiritlm.vocoder import SpiritLMVocoder


# The official `spiritlm_base()` builds its vocoder with default_style=8 ("conv-default").
OFFICIAL_DEFAULT_STYLE_ID = 8

_REQUIRED_KEYS = (
    "upsample_rates",
    "upsample_kernel_sizes",
    "upsample_initial_channel",
    "resblock_kernel_sizes",
    "resblock_dilation_sizes",
    "num_embeddings",
    "embedding_dim",
)
_UNSUPPORTED_KEYS = {
    "f0": "continuous F0 input",
    "f0_quant_num_bin": "quantised F0 input",
    "embedder_params": "speaker-embedder input",
}
# Official `CodeGenerator` parameter prefixes -> ours; the HiFi-GAN layers keep their names except `ups`.
_RENAMES = (
    ("dict.", "hubert_embedding."),
    ("f0_dict.", "pitch_embedding."),
    ("style_dict.", "style_embedding."),
    ("spkr.", "speaker_embedding."),
    ("style.", "global_style_embedding."),
    ("dur_predictor.conv1.0.", "duration_predictor.conv1."),
    ("dur_predictor.conv2.0.", "duration_predictor.conv2."),
    ("dur_predictor.ln1.", "duration_predictor.norm1."),
    ("dur_predictor.ln2.", "duration_predictor.norm2."),
    ("dur_predictor.proj.", "duration_predictor.proj."),
    ("ups.", "upsampler."),
)


def vocoder_config_from_official(
    official: dict,
    speakers: list[str] | None = None,
    styles: list[str] | None = None,
    default_style_id: int | None = None,
) -> SpiritLMVocoderConfig:
    """
    Maps an official vocoder `config.json` (a dict) and its speaker / style names to a [`SpiritLMVocoderConfig`].
    `default_style_id` defaults to the official BASE default (8) for a vocoder with a global style embedding.
    """
    missing = [key for key in _REQUIRED_KEYS if key not in official]
    if missing:
        raise ValueError(f"vocoder config.json lacks {', '.join(map(repr, missing))}")
    unsupported = [f"{key!r} ({what})" for key, what in _UNSUPPORTED_KEYS.items() if official.get(key)]
    if unsupported:
        raise ValueError(f"vocoder config.json uses features SPIRIT LM vocoders do not have: {', '.join(unsupported)}")
    has_speakers, has_styles = bool(official.get("multispkr")), bool(official.get("multistyle"))
    num_styles = official.get("num_styles", 100) if has_styles else None
    predictor = official.get("dur_predictor_params") or None
    if predictor is not None and predictor["encoder_embed_dim"] != official["embedding_dim"]:
        raise ValueError(
            f"duration predictor input {predictor['encoder_embed_dim']} differs from embedding_dim "
            f"{official['embedding_dim']}"
        )
    if has_styles and default_style_id is None and OFFICIAL_DEFAULT_STYLE_ID < num_styles:
        default_style_id = OFFICIAL_DEFAULT_STYLE_ID
    config = SpiritLMVocoderConfig(
        num_hubert_units=official["num_embeddings"],
        num_pitch_units=official.get("num_f0_tokens") or None,
        num_style_units=official.get("num_style_tokens") or None,
        num_speakers=official.get("num_speakers", 200) if has_speakers else None,
        num_styles=num_styles,
        embedding_dim=official["embedding_dim"],
        hubert_hop_size=official.get("code_hop_size", 640),
        pitch_hop_size=official.get("f0_hop_size", 1280),
        style_hop_size=official.get("style_hop_size", 16000),
        upsample_initial_channel=official["upsample_initial_channel"],
        upsample_rates=list(official["upsample_rates"]),
        upsample_kernel_sizes=list(official["upsample_kernel_sizes"]),
        resblock_kernel_sizes=list(official["resblock_kernel_sizes"]),
        resblock_dilation_sizes=[list(dilations) for dilations in official["resblock_dilation_sizes"]],
        duration_predictor_hidden_size=None if predictor is None else predictor["var_pred_hidden_dim"],
        duration_predictor_kernel_size=3 if predictor is None else predictor["var_pred_kernel_size"],
        duration_predictor_dropout=0.5 if predictor is None else float(predictor["var_pred_dropout"]),
        speakers=list(speakers) if has_speakers and speakers else None,
        styles=list(styles) if has_styles and styles else None,
        default_style_id=default_style_id if has_styles else None,
        sampling_rate=official.get("sampling_rate", 16000),
    )
    # The official generator reads its input width from the config (default 80) instead of deriving it.
    if official.get("model_in_dim", 80) != config.model_in_dim:
        raise ValueError(
            f"vocoder config.json has model_in_dim={official.get('model_in_dim', 80)} but its streams give "
            f"{config.model_in_dim} ({config.embedding_dim} per stream)"
        )
    return config


def official_state_dict_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Folds weight norm (`weight_g`, `weight_v` -> `weight`) and renames official `CodeGenerator` parameters."""
    folded = {}
    for key, value in state.items():
        if key.endswith(".weight_v"):
            continue
        if key.endswith(".weight_g"):
            prefix = key[: -len("_g")]
            if f"{prefix}_v" not in state:
                raise ValueError(f"generator.pt has {key} without {prefix}_v")
            # torch._weight_norm is what the official remove_weight_norm computes: bit-identical weights.
            folded[prefix] = torch._weight_norm(state[f"{prefix}_v"].float(), value.float(), 0)
        else:
            folded[key] = value.float()
    renamed = {}
    for key, value in folded.items():
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        renamed[key] = value
    return renamed


def _read_names(path: Path) -> list[str] | None:
    return [line.strip() for line in path.read_text().splitlines()] if path.is_file() else None


def load_official_vocoder(src_dir: str | Path, default_style_id: int | None = None) -> SpiritLMVocoder:
    """Builds a [`SpiritLMVocoder`] from an official vocoder folder (float32, eval mode)."""
    src_dir = Path(src_dir)
    config_path, weights_path = src_dir / "config.json", src_dir / "generator.pt"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"official vocoder file not found: {path}")
    official = read_json(config_path, "vocoder", ValueError)
    try:
        checkpoint = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:  # not a / truncated file
        message = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise ValueError(f"{weights_path} is not a readable PyTorch checkpoint ({message})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("generator"), dict):
        raise ValueError(f"{weights_path} has no 'generator' state dict")

    try:
        config = vocoder_config_from_official(
            official, _read_names(src_dir / "speakers.txt"), _read_names(src_dir / "styles.txt"), default_style_id
        )
    except StrictDataclassError as error:  # a config check failed: report its cause on one line
        raise ValueError(f"{config_path}: {error.__cause__ or error}") from None
    model = SpiritLMVocoder(config)
    state = official_state_dict_to_hf(checkpoint["generator"])
    expected = model.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(
            f"{weights_path} does not match its config.json: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"{weights_path}: {key} has shape {tuple(value.shape)}, config.json implies {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)
    return model.eval()


def convert_vocoder(
    src_dir: str | Path, output_dir: str | Path, default_style_id: int | None = None
) -> SpiritLMVocoder:
    """
    Converts the official vocoder in `src_dir` and saves it to `output_dir` (`config.json` + `model.safetensors`;
    pass `<repo>/vocoder` for a converted repo). Returns the converted model.
    """
    model = load_official_vocoder(src_dir, default_style_id)
    model.save_pretrained(output_dir)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-dir", required=True, help="official hifigan_spiritlm_base/ or ..._expressive_w2v2/")
    parser.add_argument("--output-dir", required=True, help="where to write config.json and model.safetensors")
    parser.add_argument("--default-style-id", type=int, default=None, help="BASE global style default (8)")
    args = parser.parse_args(argv)
    convert_vocoder(args.input_dir, args.output_dir, args.default_style_id)
    print(f"saved vocoder to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
