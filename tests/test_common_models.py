"""The checks transformers' `ModelTesterMixin` gives in-tree models, run over the three SPIRIT LM models of a tiny
repo (language model, speech tokenizer, vocoder; BASE and EXPRESSIVE): save/load round trip, dtype, device and bad
`from_pretrained` input."""

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedModel

from transformers_spiritlm import SpiritLMForCausalLM, SpiritLMSpeechTokenizer, SpiritLMVocoder
from transformers_spiritlm.configuration_spiritlm import SPEECH_TOKENIZER_SUBFOLDER, VOCODER_SUBFOLDER


SPEECH = Path(__file__).parent / "fixtures" / "audio" / "speech_2s_16k.wav"
UNIT_STRING = "[St3][Pi4][Hu5][Hu7][Pi9][Hu1]"


@dataclass(frozen=True)
class Component:
    name: str
    model_class: type[PreTrainedModel]
    subfolder: str
    model_type: str
    # The model's outputs on a fixed input, as one float tensor.
    outputs: Callable[[PreTrainedModel], torch.Tensor]
    # Parameters that stay float32 whatever `dtype` asks for (prefix), by design.
    float32_prefix: str | None = None


def lm_outputs(model: SpiritLMForCausalLM) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([[1, 5, 9, 2, 7]])).logits


def speech_tokenizer_outputs(model: SpiritLMSpeechTokenizer) -> torch.Tensor:
    units = model.encode_units(SPEECH)
    # 2 s of speech: 49 hubert units (25 per second), EXPRESSIVE adding 25 pitch units and 2 style units.
    assert {name: len(values) for name, values in units.items()} == (
        {"hubert": 49, "pitch": 25, "style": 2} if "pitch" in units else {"hubert": 49}
    )
    return torch.tensor(sum(units.values(), []), dtype=torch.float32)


def vocoder_outputs(model: SpiritLMVocoder) -> torch.Tensor:
    return model.decode_string(UNIT_STRING, generator=0)


COMPONENTS = [
    Component("lm", SpiritLMForCausalLM, "", "spiritlm", lm_outputs),
    Component(
        "speech_tokenizer",
        SpiritLMSpeechTokenizer,
        SPEECH_TOKENIZER_SUBFOLDER,
        "spiritlm_speech_tokenizer",
        speech_tokenizer_outputs,
        # The pitch encoder (FCPE and its VQ) always runs in float32: see `SpiritLMSpeechTokenizer._apply`.
        float32_prefix="pitch_encoder.",
    ),
    Component("vocoder", SpiritLMVocoder, VOCODER_SUBFOLDER, "spiritlm_vocoder", vocoder_outputs),
]


@pytest.fixture(params=["tiny_repo", "tiny_base_repo"], ids=["expressive", "base"])
def repo(request) -> Path:
    return request.getfixturevalue(request.param)


@pytest.fixture(params=COMPONENTS, ids=[component.name for component in COMPONENTS])
def component(request) -> Component:
    return request.param


def load(component: Component, folder: Path, **kwargs) -> PreTrainedModel:
    return component.model_class.from_pretrained(folder, subfolder=component.subfolder, **kwargs)


def config_fields(model: PreTrainedModel) -> dict:
    """The config as a dict, less where it was loaded from."""
    return {key: value for key, value in model.config.to_dict().items() if key != "_name_or_path"}


def parameter_dtypes(model: PreTrainedModel) -> dict[str, torch.dtype]:
    return {name: parameter.dtype for name, parameter in model.named_parameters()}


def test_save_load_round_trip(repo, component, tmp_path):
    model = load(component, repo).eval()
    model.save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["config.json", "model.safetensors", *(["generation_config.json"] if component.name == "lm" else [])]
    )
    reloaded = component.model_class.from_pretrained(tmp_path).eval()

    assert type(reloaded) is component.model_class
    assert config_fields(reloaded) == config_fields(model)
    state, reloaded_state = model.state_dict(), reloaded.state_dict()
    assert state.keys() == reloaded_state.keys()
    for name, tensor in state.items():
        assert torch.equal(reloaded_state[name], tensor), name
    outputs = component.outputs(model)
    assert outputs.numel() > 0 and torch.isfinite(outputs).all()
    assert torch.equal(component.outputs(reloaded), outputs)


def test_dtype_bfloat16_and_auto(repo, component, tmp_path):
    float32 = parameter_dtypes(load(component, repo))
    assert set(float32.values()) == {torch.float32}
    kept = {name for name in float32 if component.float32_prefix and name.startswith(component.float32_prefix)}
    bfloat16 = {name: torch.float32 if name in kept else torch.bfloat16 for name in float32}

    model = load(component, repo, dtype=torch.bfloat16).eval()
    assert parameter_dtypes(model) == bfloat16
    assert model.dtype == torch.bfloat16
    assert parameter_dtypes(load(component, repo).to(torch.bfloat16)) == bfloat16
    outputs = component.outputs(model)
    assert outputs.numel() > 0 and torch.isfinite(outputs).all()

    # "auto" keeps what was saved: bfloat16 from the bfloat16 save, float32 from the repo.
    model.save_pretrained(tmp_path)
    assert parameter_dtypes(component.model_class.from_pretrained(tmp_path, dtype="auto")) == bfloat16
    assert parameter_dtypes(load(component, repo, dtype="auto")) == float32


def test_device(repo, component):
    for model in (load(component, repo).to("cpu"), load(component, repo, device_map="cpu")):
        assert model.device == torch.device("cpu")
        assert {parameter.device for parameter in model.parameters()} == {torch.device("cpu")}
        assert {buffer.device for buffer in model.buffers()} <= {torch.device("cpu")}


def test_missing_folder_is_named(component, tmp_path, monkeypatch):
    missing = tmp_path / "no-such-repo"
    message = (
        f"cannot load {component.model_class.__name__}: {re.escape(str(missing))} is not a folder; check the path"
    )
    with pytest.raises(FileNotFoundError, match=f"^{message}$"):
        component.model_class.from_pretrained(missing, subfolder=component.subfolder)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"\./no-such-repo is not a folder"):
        component.model_class.from_pretrained("./no-such-repo", subfolder=component.subfolder)


def test_config_of_another_model_is_refused(tiny_repo, component, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(tiny_repo / component.subfolder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(
        ValueError,
        match=rf"^this config has model_type 'bert', not '{component.model_type}': it belongs to another model\. "
        rf"A converted SPIRIT LM repo keeps the language model at its root, the speech tokenizer in "
        rf"{SPEECH_TOKENIZER_SUBFOLDER}/ and the vocoder in {VOCODER_SUBFOLDER}/ \(pass subfolder=\.\.\.\)$",
    ):
        component.model_class.from_pretrained(folder)


@pytest.mark.parametrize(
    ("subfolder", "auto_class", "model_class"),
    [
        ("", AutoModelForCausalLM, SpiritLMForCausalLM),
        (SPEECH_TOKENIZER_SUBFOLDER, AutoModel, SpiritLMSpeechTokenizer),
        (VOCODER_SUBFOLDER, AutoModel, SpiritLMVocoder),
    ],
)
def test_auto_class_loads_the_right_model(repo, subfolder, auto_class, model_class):
    assert type(auto_class.from_pretrained(repo, subfolder=subfolder)) is model_class
