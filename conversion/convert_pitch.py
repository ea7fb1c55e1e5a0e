"""Convert the official pitch tokenizer (F0 VQ-VAE + FCPE weights) into a [`SpiritLMPitchUnitEncoder`] state dict +
config.

Inputs:
- `speech_tokenizer/vqvae_f0_quantizer/{config.yaml,model.pt}` of the official checkpoints;
- the FCPE weights `fcpe_c_v001.pt` of the `torchfcpe` package, given as the `.pt` file itself, a torchfcpe wheel,
  or a folder holding either (for example the one filled by `pip download torchfcpe==0.0.4 --no-deps -d DIR`);
  without one, an installed torchfcpe package is looked up (never imported).

    python conversion/convert_pitch.py --checkpoints-dir CKPT --fcpe-checkpoint DIR --output-dir OUT

writes `OUT/config.json` (the [`PitchUnitEncoderConfig`] dict) and `OUT/model.safetensors`. The speech tokenizer
conversion calls [`convert_pitch`] instead and nests both under its own prefix and config key.
"""

import argparse
import importlib.util
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import yaml

from transformers_spiritlm.conversion import ConversionError
from transformers_spiritlm.speech_tokenizer.fcpe import FCPEConfig
from transformers_spiritlm.speech_tokenizer.pitch import PitchUnitEncoderConfig, SpiritLMPitchUnitEncoder


FCPE_ASSET = "torchfcpe/assets/fcpe_c_v001.pt"
FCPE_DOWNLOAD_HINT = "get it with `pip download torchfcpe==0.0.4 --no-deps -d DIR` and pass --fcpe-checkpoint DIR"
VQVAE_FEATURES = ("f0_interp,vuv", "f0,vuv", "norm_f0_interp,vuv", "norm_f0,vuv")


def _torch_load(source, name: str) -> dict:
    # Training checkpoints may carry numpy scalars and arrays next to the weights; allow those, nothing executable.
    multiarray = getattr(np, "_core", None) or np.core
    safe = [np.ndarray, np.dtype, multiarray.multiarray.scalar, multiarray.multiarray._reconstruct]
    safe += [type(np.dtype(kind)) for kind in (np.bool_, np.int32, np.int64, np.float16, np.float32, np.float64)]
    try:
        with torch.serialization.safe_globals(safe):
            checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        # torch's weights-only refusal is a long text; its "Unsupported ..." line names the cause.
        reason = next((line for line in lines if "Unsupported" in line), lines[0])
        raise ConversionError(f"cannot read {name} as a weights-only torch checkpoint: {reason}") from None
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{name} holds a {type(checkpoint).__name__}, expected a dict checkpoint")
    return checkpoint


def _read_wheel_asset(wheel: Path) -> dict:
    try:
        with zipfile.ZipFile(wheel) as archive:
            if FCPE_ASSET not in archive.namelist():
                raise ConversionError(f"{wheel} has no {FCPE_ASSET}; is it a torchfcpe wheel? {FCPE_DOWNLOAD_HINT}")
            data = archive.read(FCPE_ASSET)
    except zipfile.BadZipFile:
        raise ConversionError(f"{wheel} is not a valid wheel (zip) file; {FCPE_DOWNLOAD_HINT}") from None
    return _torch_load(io.BytesIO(data), f"{wheel}:{FCPE_ASSET}")


def _installed_torchfcpe_asset() -> Path | None:
    spec = importlib.util.find_spec("torchfcpe")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    asset = Path(next(iter(spec.submodule_search_locations))) / "assets" / "fcpe_c_v001.pt"
    return asset if asset.is_file() else None


def load_fcpe_checkpoint(path: str | Path | None = None) -> dict:
    """The torchfcpe checkpoint dict (`{"model": state_dict, "config_dict": {...}, ...}`) from `path`: the `.pt`
    file, a torchfcpe wheel, or a folder holding one of them (a wheel, `torchfcpe/assets/`, or the `.pt`).
    With `path=None`, an installed torchfcpe package's bundled file is used if there is one."""
    if path is None:
        asset = _installed_torchfcpe_asset()
        if asset is None:
            raise ConversionError(f"FCPE weights are needed for the pitch tokenizer: {FCPE_DOWNLOAD_HINT}")
        return _torch_load(asset, str(asset))
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"FCPE checkpoint {path} does not exist; {FCPE_DOWNLOAD_HINT}")
    if path.is_dir():
        candidates = [path / FCPE_ASSET, path / "assets" / "fcpe_c_v001.pt", path / "fcpe_c_v001.pt"]
        for candidate in candidates:
            if candidate.is_file():
                return _torch_load(candidate, str(candidate))
        wheels = sorted(path.glob("torchfcpe-*.whl"))
        if not wheels:
            raise ConversionError(f"no torchfcpe wheel or fcpe_c_v001.pt in {path}; {FCPE_DOWNLOAD_HINT}")
        return _read_wheel_asset(wheels[-1])
    if path.suffix in (".whl", ".zip"):
        return _read_wheel_asset(path)
    return _torch_load(path, str(path))


_FCPE_LAYER = re.compile(r"net\.encoder_layers\.(\d+)\.conformer\.(?:0\.)?net\.(\d+)\.(?:conv\.)?(weight|bias)")
_FCPE_LAYER_PARTS = {"0": "norm", "2": "pointwise_in", "4": "depthwise", "6": "pointwise_out"}
_FCPE_TOP = {
    "input_stack.0": "input_conv",
    "input_stack.1": "input_norm",
    "input_stack.3": "input_proj",
    "norm": "norm",
}
# Training-only entries: the unused attention pre-norm of conv-only layers and the label-smoothing bound.
_FCPE_DROPPED = re.compile(r"net\.encoder_layers\.\d+\.norm\.(weight|bias)|gaussian_blurred_cent_mask")


def convert_fcpe(checkpoint: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torchfcpe checkpoint dict → ([`SpiritLMFCPEF0Extractor`] state dict, [`FCPEConfig`] dict)."""
    if "model" not in checkpoint or "config_dict" not in checkpoint:
        raise ConversionError("the FCPE checkpoint lacks its 'model' or 'config_dict' entry; is it fcpe_c_v001.pt?")
    settings = checkpoint["config_dict"]
    mel, model = settings.get("mel", {}), settings.get("model", {})
    if model.get("type") != "CFNaiveMelPE" or not model.get("conv_only"):
        raise ConversionError(
            f"unsupported FCPE model (type {model.get('type')!r}, conv_only {model.get('conv_only')!r}); "
            "only the conv-only CFNaiveMelPE of torchfcpe's fcpe_c_v001.pt is supported"
        )
    if str(mel.get("type", "default")).lower() not in ("default", "none"):
        raise ConversionError(f"unsupported FCPE mel type {mel.get('type')!r}; only the default log-mel is supported")
    if model.get("use_harmonic_emb"):
        raise ConversionError("unsupported FCPE model with harmonic embeddings")

    state_dict, unexpected = {}, []
    weights = checkpoint["model"]
    for key, value in weights.items():
        if match := _FCPE_LAYER.fullmatch(key):
            layer, part, kind = match.groups()
            state_dict[f"layers.{layer}.{_FCPE_LAYER_PARTS[part]}.{kind}"] = value
        elif (prefix := key.rsplit(".", 1)[0]) in _FCPE_TOP:
            state_dict[f"{_FCPE_TOP[prefix]}.{key.rsplit('.', 1)[1]}"] = value
        elif key in ("output_proj.bias", "cent_table"):
            state_dict[key] = value
        elif key not in ("output_proj.weight_g", "output_proj.weight_v", "output_proj.weight") and not (
            _FCPE_DROPPED.fullmatch(key)
        ):
            unexpected.append(key)
    if unexpected:
        raise ConversionError(f"unexpected FCPE weights {unexpected[:5]}; is this torchfcpe's fcpe_c_v001.pt?")
    if "output_proj.weight_g" in weights:
        # Fold the weight norm exactly as torch evaluates it at every forward.
        state_dict["output_proj.weight"] = torch._weight_norm(
            weights["output_proj.weight_v"], weights["output_proj.weight_g"], 0
        )
    elif "output_proj.weight" in weights:
        state_dict["output_proj.weight"] = weights["output_proj.weight"]

    try:
        config = FCPEConfig(
            sampling_rate=int(mel.get("sr", 16000)),
            n_fft=int(mel.get("n_fft", 1024)),
            win_length=int(mel.get("win_size", 1024)),
            mel_hop_length=int(mel.get("hop_size", 160)),
            num_mel_bins=int(mel["num_mels"]),
            mel_fmin=float(mel.get("fmin", 0) or 0),
            mel_fmax=float(mel.get("fmax") or mel.get("sr", 16000) / 2),
            hidden_size=int(model["hidden_dims"]),
            num_layers=int(model["n_layers"]),
            num_cent_bins=int(model["out_dims"]),
            cent_f0_min=float(model["f0_min"]),
            cent_f0_max=float(model["f0_max"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConversionError(f"the FCPE checkpoint's config_dict is incomplete or invalid: {error!r}") from None
    return state_dict, config.to_diff_dict()


class MissingFileError(ConversionError, FileNotFoundError):
    """An official file that should exist does not."""


_VQVAE_DOWN_CONV = re.compile(r"encoder\.level_blocks\.0\.model\.(\d+)\.0\.(weight|bias)")
_VQVAE_RES_CONV = re.compile(r"encoder\.level_blocks\.0\.model\.(\d+)\.1\.model\.(\d+)\.model\.([13])\.(weight|bias)")
_VQVAE_LAST_CONV = re.compile(r"encoder\.level_blocks\.0\.model\.(\d+)\.(weight|bias)")


def _read_vqvae_config(path: Path) -> dict:
    if not path.is_file():
        raise MissingFileError(f"missing {path}; expected the official vqvae_f0_quantizer/config.yaml")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConversionError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{path} should hold a mapping, got {type(config).__name__}")
    return config


def vqvae_config_to_pitch_kwargs(config: dict, name: str = "config.yaml") -> dict:
    """Official VQ-VAE `config.yaml` dict → the VQ-VAE fields of [`PitchUnitEncoderConfig`] (level 0)."""
    try:
        encoder, vq = config["encoder_params"], config["vq_params"]
        features = config["features"]
        if features not in VQVAE_FEATURES:
            raise ConversionError(
                f"{name}: unsupported features {features!r}; the official tokenizer accepts "
                f"{', '.join(VQVAE_FEATURES)}"
            )
        down_t, stride_t = encoder["downs_t"][0], encoder["strides_t"][0]
        return {
            "normalize_f0": bool(config.get("speaker_norm", False)) or "norm_" in features,
            "input_emb_width": int(encoder["input_emb_width"]),
            "width": int(encoder["width"]),
            "output_emb_width": int(encoder["output_emb_width"]),
            "down_t": [int(d) for d in down_t] if isinstance(down_t, (list, tuple)) else int(down_t),
            "stride_t": [int(s) for s in stride_t] if isinstance(stride_t, (list, tuple)) else int(stride_t),
            "depth": int(encoder["depth"]),
            "m_conv": float(encoder.get("m_conv", 1.0)),
            "dilation_growth_rate": int(encoder.get("dilation_growth_rate", 1)),
            "dilation_cycle": None if encoder.get("dilation_cycle") is None else int(encoder["dilation_cycle"]),
            "res_scale": bool(encoder.get("res_scale", False)),
            "l_bins": int(vq["l_bins"]),
            "emb_width": int(vq["emb_width"]),
        }
    except (KeyError, IndexError, TypeError) as error:
        raise ConversionError(f"{name} lacks or mistypes an F0 VQ-VAE setting: {error!r}") from None


def convert_vqvae_state_dict(weights: dict[str, torch.Tensor], num_down_blocks: int) -> dict[str, torch.Tensor]:
    """Official VQVAE state dict → [`SpiritLMPitchUnitEncoder`] `encoder.*` / `codebook.codebook` (decoder and other
    levels dropped)."""
    state_dict = {}
    for key, value in weights.items():
        if match := _VQVAE_DOWN_CONV.fullmatch(key):
            block, kind = match.groups()
            state_dict[f"encoder.down_blocks.{block}.conv.{kind}"] = value
        elif match := _VQVAE_RES_CONV.fullmatch(key):
            block, layer, part, kind = match.groups()
            name = "conv" if part == "1" else "proj"
            state_dict[f"encoder.down_blocks.{block}.res_blocks.{layer}.{name}.{kind}"] = value
        elif (match := _VQVAE_LAST_CONV.fullmatch(key)) and int(match.group(1)) == num_down_blocks:
            state_dict[f"encoder.proj.{match.group(2)}"] = value
        elif key == "vq.level_blocks.0.k":
            state_dict["codebook.codebook"] = value
    return state_dict


def convert_pitch(
    vqvae_dir: str | Path, fcpe_checkpoint: str | Path | dict | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """Official `vqvae_f0_quantizer/` + FCPE weights → ([`SpiritLMPitchUnitEncoder`] state dict, its config dict).

    `fcpe_checkpoint` is anything [`load_fcpe_checkpoint`] accepts, or an already loaded torchfcpe checkpoint dict.
    The result is checked by loading it into a [`SpiritLMPitchUnitEncoder`] (all keys, all shapes).
    """
    vqvae_dir = Path(vqvae_dir)
    if not vqvae_dir.is_dir():
        raise MissingFileError(f"missing folder {vqvae_dir}; expected the official vqvae_f0_quantizer/")
    config_path = vqvae_dir / "config.yaml"
    kwargs = vqvae_config_to_pitch_kwargs(_read_vqvae_config(config_path), str(config_path))
    model_path = vqvae_dir / "model.pt"
    if not model_path.is_file():
        raise MissingFileError(f"missing {model_path}; expected the official vqvae_f0_quantizer/model.pt")
    checkpoint = _torch_load(model_path, str(model_path))
    if not isinstance(checkpoint.get("model"), dict):
        raise ConversionError(f"{model_path} has no 'model' state dict; is it the official F0 VQ-VAE checkpoint?")

    if not isinstance(fcpe_checkpoint, dict):
        fcpe_checkpoint = load_fcpe_checkpoint(fcpe_checkpoint)
    fcpe_state, fcpe_config = convert_fcpe(fcpe_checkpoint)
    try:
        config = PitchUnitEncoderConfig(fcpe=fcpe_config, **kwargs)
    except ValueError as error:
        raise ConversionError(f"{config_path}: {error}") from None
    model = SpiritLMPitchUnitEncoder(config)
    state_dict = convert_vqvae_state_dict(checkpoint["model"], len(model.encoder.down_blocks))
    state_dict.update({f"fcpe.{key}": value for key, value in fcpe_state.items()})
    # Derived tables are stored too, so a loaded model never depends on recomputing them.
    for key in ("fcpe.mel.mel_filters", "fcpe.mel.window"):
        state_dict[key] = model.state_dict()[key]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    if missing or wrong:
        raise ConversionError(
            f"{model_path} does not match its config.yaml: missing {missing[:4]}, wrong shapes {wrong[:4]}"
        )
    return {key: value.contiguous().float() for key, value in state_dict.items()}, config.to_diff_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints-dir", type=Path, help="official checkpoints/ (holds speech_tokenizer/)")
    source.add_argument("--vqvae-dir", type=Path, help="the official vqvae_f0_quantizer/ folder itself")
    parser.add_argument("--fcpe-checkpoint", type=Path, help="fcpe_c_v001.pt, a torchfcpe wheel, or a folder of one")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    vqvae_dir = args.vqvae_dir or args.checkpoints_dir / "speech_tokenizer" / "vqvae_f0_quantizer"
    try:
        state_dict, config = convert_pitch(vqvae_dir, args.fcpe_checkpoint)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from safetensors.torch import save_file

    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state_dict, str(args.output_dir / "model.safetensors"))
    print(f"wrote {args.output_dir / 'config.json'} and {args.output_dir / 'model.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
