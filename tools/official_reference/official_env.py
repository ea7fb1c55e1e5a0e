"""Makes the official SPIRIT LM source importable in the environment built by `setup.sh`.

    sys.path.insert(0, str(REPO / "tools" / "official_reference"))
    import official_env
    official_env.setup(official_src, checkpoints_dir)     # CKPT holds speech_tokenizer/ and spiritlm_model/
    from spiritlm.speech_tokenizer import spiritlm_expressive   # the official code, unmodified

Two things the official code cannot do here are stood in for, nothing else: `import torchaudio` (`stubs/torchaudio`,
whose resampling is this repository's own port, bit-identical to torchaudio's `functional.resample`), and
`Wav2Vec2FeatureExtractor.from_pretrained("facebook/wav2vec2-base")`, a Hub download, built here from that repo's
published preprocessor settings.
"""

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The settings of facebook/wav2vec2-base's preprocessor_config.json.
WAV2VEC2_BASE_FEATURE_EXTRACTOR = {
    "feature_size": 1,
    "sampling_rate": 16000,
    "padding_value": 0.0,
    "do_normalize": True,
    "return_attention_mask": False,
}


def setup(official_src: str | os.PathLike, checkpoints_dir: str | os.PathLike | None = None) -> None:
    """Puts the torchaudio stand-in and `official_src` (a checkout of facebookresearch/spiritlm) first on `sys.path`,
    points the official code at `checkpoints_dir` and works offline."""
    official_src = Path(official_src).resolve()
    if not (official_src / "spiritlm").is_dir():
        raise FileNotFoundError(f"{official_src} is not a checkout of facebookresearch/spiritlm (no spiritlm/ in it)")
    for path in (str(HERE / "stubs"), str(official_src)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if checkpoints_dir is not None:
        os.environ["SPIRITLM_CHECKPOINTS_DIR"] = str(Path(checkpoints_dir).resolve())

    from transformers import Wav2Vec2FeatureExtractor

    hub_loader = Wav2Vec2FeatureExtractor.from_pretrained.__func__

    def from_pretrained(cls, name, *args, **kwargs):
        if name == "facebook/wav2vec2-base":
            return cls(**WAV2VEC2_BASE_FEATURE_EXTRACTOR)
        return hub_loader(cls, name, *args, **kwargs)

    Wav2Vec2FeatureExtractor.from_pretrained = classmethod(from_pretrained)


def load_writer(name: str) -> ModuleType:
    """One of our official-format checkpoint writers, `tools/official_formats/<name>.py`, loaded by path:
    they need only torch and numpy, while the package itself needs transformers 5."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / "official_formats" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
