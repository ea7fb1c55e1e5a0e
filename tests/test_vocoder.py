import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from official_hubert import weights_digest
from official_vocoder import TINY_SPEAKERS, TINY_STYLES, write_official_vocoder, write_official_vocoders
from transformers import AutoConfig, AutoModel

from transformers_spiritlm import SpiritLMVocoder, SpiritLMVocoderConfig, SpiritLMVocoderOutput
from transformers_spiritlm.configuration_spiritlm import VOCODER_SUBFOLDER
from transformers_spiritlm.conversion.convert_vocoder import convert_vocoder, load_official_vocoder
from transformers_spiritlm.testing.vocoder import tiny_vocoder_config
from transformers_spiritlm.units import MOST_COMMON_STYLES
from transformers_spiritlm.vocoder import load_vocoder


FIXTURES = Path(__file__).parent / "fixtures" / "vocoder"
RECORD = json.loads((FIXTURES / "official_vocoder.json").read_text())
OFFICIAL_WAVEFORMS = np.load(FIXTURES / "official_vocoder.npz")


def _digest(path: Path) -> str:
    return weights_digest(torch.load(path, map_location="cpu", weights_only=True)["generator"])


@pytest.fixture(scope="module")
def official_dirs(tmp_path_factory):
    """The official-format checkpoints the fixtures were recorded with, rewritten by our writer."""
    root = tmp_path_factory.mktemp("official")
    paths = write_official_vocoders(root, seed=RECORD["seed"], **RECORD["config_overrides"])
    for variant, path in paths.items():
        assert _digest(path / "generator.pt") == RECORD["weights_sha256"][variant]
    return paths


@pytest.fixture(scope="module")
def vocoders(official_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    return {
        variant: convert_vocoder(path, out / variant / "vocoder").eval() for variant, path in official_dirs.items()
    }


def _run(vocoder: SpiritLMVocoder, case: dict) -> torch.Tensor:
    if case["call"] == "decode_string":
        return vocoder.decode_string(case["string"], speaker_id=case["speaker_id"])
    return vocoder.decode_units(
        case["hubert"],
        pitch=case.get("pitch"),
        style=case.get("style"),
        speaker_id=case["speaker_id"],
        style_id=case.get("style_id"),
        dur_pred=case["dur_pred"],
    )


@pytest.mark.parametrize("case", RECORD["cases"], ids=lambda case: case["name"])
def test_matches_official_vocoder(vocoders, case):
    expected = torch.from_numpy(OFFICIAL_WAVEFORMS[case["name"]])
    waveform = _run(vocoders[case["variant"]], case)
    assert waveform.dtype == torch.float32 and waveform.ndim == 1
    assert waveform.shape == expected.shape
    torch.testing.assert_close(waveform, expected, atol=1e-4, rtol=0)


def test_duration_prediction_expands_the_waveform(vocoders):
    # 46 deduplicated units, 40 samples each, re-expanded by predicted durations of 1 to 3 frames.
    case = next(case for case in RECORD["cases"] if case["name"] == "base_style_2s")
    plain = vocoders["base"].decode_units(case["hubert"], dur_pred=False)
    assert plain.shape[0] == len(case["hubert"]) * vocoders["base"].config.hop_length
    assert vocoders["base"].decode_units(case["hubert"]).shape[0] > plain.shape[0]


def test_frame_rate_pitch_switches_duration_prediction_off_as_official(vocoders):
    case = next(case for case in RECORD["cases"] if case["name"] == "expressive_units_2s")
    kwargs = {"pitch": case["pitch"], "style": case["style"], "speaker_id": 3}
    on = vocoders["expressive"].decode_units(case["hubert"], dur_pred=True, **kwargs)
    torch.testing.assert_close(
        on, vocoders["expressive"].decode_units(case["hubert"], dur_pred=False, **kwargs), atol=0, rtol=0
    )
    assert on.shape[0] == len(case["hubert"]) * vocoders["expressive"].config.hop_length


def test_input_forms_give_the_same_waveform(vocoders):
    vocoder = vocoders["expressive"]
    hubert, pitch, style = [5, 9, 9, 40, 300, 2, 2, 7], [1, 2, 3, 4], [9]
    reference = vocoder.decode_units(hubert, pitch, style, dur_pred=False)
    for convert in (lambda x: " ".join(map(str, x)), torch.tensor, np.array, tuple):
        out = vocoder.decode_units(convert(hubert), convert(pitch), convert(style), dur_pred=False)
        torch.testing.assert_close(out, reference, atol=0, rtol=0)


def test_speaker_and_style_names(vocoders):
    base = vocoders["base"]
    assert base.config.speakers == TINY_SPEAKERS and base.config.styles == TINY_STYLES
    assert base.config.default_style_id == 8
    hubert = [3, 70, 200, 11]
    by_index = base.decode_units(hubert, speaker_id=3, style_id=8)
    torch.testing.assert_close(
        base.decode_units(hubert, speaker_id="ex04", style_id="conv-default"), by_index, atol=0, rtol=0
    )
    torch.testing.assert_close(base.decode_units(hubert, speaker_id=3), by_index, atol=0, rtol=0)  # default style 8
    assert not torch.equal(base.decode_units(hubert, speaker_id=2), by_index)


def test_missing_style_uses_a_common_style_reproducibly(vocoders):
    vocoder = vocoders["expressive"]
    string = "[Pi5][Hu1][Hu2][Pi6][Hu3][Hu3][Hu40]"
    style = random.Random(7).choice(MOST_COMMON_STYLES)
    expected = vocoder.decode_units([1, 2, 3, 3, 40], [5, 5, 6, 6, 6], [style] * 5)
    torch.testing.assert_close(vocoder.decode_string(string, generator=7), expected, atol=0, rtol=0)


def test_base_decode_string_ignores_pitch_and_style_units(vocoders):
    base = vocoders["base"]
    torch.testing.assert_close(
        base.decode_string("[St3][Pi5][Hu1][Hu2][Pi6][Hu3]"), base.decode_string("[Hu1][Hu2][Hu3]"), atol=0, rtol=0
    )


def test_batch_matches_one_by_one(vocoders):
    base = vocoders["base"]
    batch = [[4, 8, 15, 16, 23, 42], [100, 200], list(range(300, 340))]
    out = base.decode_units(batch, speaker_id=[0, 1, 2])
    assert isinstance(out, SpiritLMVocoderOutput)
    for row, length, hubert, speaker in zip(out.waveform, out.lengths, batch, [0, 1, 2]):
        single = base.decode_units(hubert, speaker_id=speaker)
        assert int(length) == single.shape[0]
        torch.testing.assert_close(row[:length], single, atol=1e-5, rtol=0)
        assert not row[length:].any()


def test_expressive_batch_mixes_string_and_frame_rate_units(vocoders):
    vocoder = vocoders["expressive"]
    cases = [case for case in RECORD["cases"] if case["name"] in ("expressive_string_2s", "expressive_units_2s")]
    strings = [cases[0]["string"], "[St4][Pi1][Hu7][Hu8][Pi2][Hu9]"]
    out = vocoder.decode_string(strings)
    for row, length, string in zip(out.waveform, out.lengths, strings):
        torch.testing.assert_close(row[:length], vocoder.decode_string(string), atol=1e-5, rtol=0)
    units = cases[1]
    out = vocoder.decode_units(
        [units["hubert"], units["hubert"][:20]],
        [units["pitch"], units["pitch"][:10]],
        [units["style"], [1]],
        speaker_id=3,
    )
    torch.testing.assert_close(
        out.waveform[1, : out.lengths[1]],
        vocoder.decode_units(units["hubert"][:20], units["pitch"][:10], [1], speaker_id=3),
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(
        out.waveform[0, : out.lengths[0]],
        torch.from_numpy(OFFICIAL_WAVEFORMS["expressive_units_2s"]),
        atol=1e-4,
        rtol=0,
    )


def test_two_dimensional_tensor_is_a_batch(vocoders):
    base = vocoders["base"]
    hubert = torch.tensor([[1, 2, 3, 4], [9, 8, 7, 6]])
    out = base.decode_units(hubert, dur_pred=False)
    assert out.waveform.shape == (2, 4 * base.config.hop_length)
    torch.testing.assert_close(out.waveform[1], base.decode_units(hubert[1], dur_pred=False), atol=1e-5, rtol=0)


def test_forward_takes_unit_tensors_and_returns_an_output(vocoders):
    vocoder = vocoders["expressive"]
    hubert, pitch, style = [5, 9, 40, 300, 2, 7], [1, 1, 2, 2, 3, 3], [9] * 6
    output = vocoder(
        torch.tensor([hubert]), torch.tensor([pitch]), torch.tensor([style]), speaker_id=torch.tensor([3])
    )
    assert isinstance(output, SpiritLMVocoderOutput) and output.waveform.requires_grad
    expected = vocoder.decode_units(hubert, pitch, style, speaker_id=3)
    assert output.lengths.tolist() == [len(expected)]
    torch.testing.assert_close(output.waveform[0], expected, atol=0, rtol=0)
    # Given durations replace the predicted ones; padded rows (`unit_lengths`) give the row alone.
    durations = vocoder.predict_durations(hubert)
    with torch.no_grad():
        given = vocoder(
            torch.tensor([hubert]), torch.tensor([pitch]), torch.tensor([style]), 3, durations=durations[None]
        )
        padded = vocoder(
            torch.tensor([hubert, hubert[:3] + [0] * 3]),
            torch.tensor([pitch, pitch[:3] + [0] * 3]),
            torch.tensor([style, style]),
            speaker_id=3,
            unit_lengths=torch.tensor([6, 3]),
            dur_pred=torch.tensor([True, False]),
        )
    torch.testing.assert_close(given.waveform[0], expected, atol=0, rtol=0)
    torch.testing.assert_close(padded.waveform[0], expected, atol=0, rtol=0)
    alone = vocoder.decode_units(hubert[:3], pitch[:3], style[:3], speaker_id=3, dur_pred=False)
    assert padded.lengths.tolist() == [len(expected), len(alone)]
    torch.testing.assert_close(padded.waveform[1, : len(alone)], alone, atol=0, rtol=0)


@pytest.mark.parametrize(
    "variant, args, kwargs, error, message",
    [
        ("base", ([1, 2, 3],), {}, TypeError, r"forward takes hubert as a tensor .* decode_units takes lists"),
        (
            "base",
            (torch.tensor([1, 2]),),
            {},
            ValueError,
            r"shape \(batch_size, num_units\), got \(2,\).*decode_units",
        ),
        ("base", (torch.tensor([[1, 2], [3, 501]]),), {}, ValueError, "item 1: hubert unit 501 at position 1"),
        ("base", (torch.tensor([[1, 2]]),), {"unit_lengths": torch.tensor([3])}, ValueError, "unit_lengths must"),
        ("base", (torch.tensor([[1, 2]]),), {"durations": torch.tensor([[1, -1]])}, ValueError, "frames >= 0"),
        ("base", (torch.tensor([[1, 2]]),), {"speaker_id": 9}, ValueError, "item 0: speaker_id=9 is out of range"),
        ("expressive", (torch.tensor([[1, 2]]),), {}, ValueError, "needs `pitch` units"),
        (
            "expressive",
            (torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 2]]), torch.tensor([[1, 1, 1, 1]])),
            {},
            ValueError,
            r"pitch must be a tensor of the shape of hubert \(1, 4\)",
        ),
    ],
)
def test_forward_bad_input_raises_clear_errors(vocoders, variant, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        vocoders[variant](*args, **kwargs)


def test_one_optimizer_step_through_forward_changes_the_generator(official_dirs):
    vocoder = load_official_vocoder(official_dirs["expressive"]).train()
    before = {name: parameter.detach().clone() for name, parameter in vocoder.named_parameters()}
    optimizer = torch.optim.SGD(vocoder.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    hubert, pitch = (
        torch.randint(0, 501, (2, 8), generator=generator),
        torch.randint(0, 64, (2, 8), generator=generator),
    )
    output = vocoder(hubert, pitch, torch.full((2, 8), 7), speaker_id=torch.tensor([0, 3]), dur_pred=False)
    target = torch.zeros_like(output.waveform)
    torch.nn.functional.l1_loss(output.waveform, target).backward()
    optimizer.step()
    changed = {name for name, parameter in vocoder.named_parameters() if not torch.equal(parameter, before[name])}
    generator_weights = {
        name for name in before if name.startswith(("conv_pre.", "upsampler.", "resblocks.", "conv_post."))
    }
    assert generator_weights <= changed
    assert {"hubert_embedding.weight", "pitch_embedding.weight", "style_embedding.weight"} <= changed
    assert "speaker_embedding.weight" in changed


def test_save_and_load_give_identical_waveforms(vocoders, tmp_path):
    vocoder = vocoders["expressive"]
    vocoder.save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SpiritLMVocoderConfig)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(reloaded, SpiritLMVocoder)
    string = next(case["string"] for case in RECORD["cases"] if case["name"] == "expressive_string_2s")
    assert torch.equal(reloaded.decode_string(string), vocoder.decode_string(string))
    from_repo = SpiritLMVocoder.from_pretrained(tmp_path.parent, subfolder=tmp_path.name)
    assert torch.equal(from_repo.decode_string(string), vocoder.decode_string(string))


def test_load_vocoder_reads_the_vocoder_subfolder_of_a_repo(vocoders, tmp_path):
    vocoders["base"].save_pretrained(tmp_path / VOCODER_SUBFOLDER)
    loaded = load_vocoder(tmp_path)
    assert type(loaded) is SpiritLMVocoder and not loaded.training
    assert torch.equal(loaded.decode_string("[Hu1][Hu2][Hu3]"), vocoders["base"].decode_string("[Hu1][Hu2][Hu3]"))


def test_config_says_which_unit_types_the_vocoder_takes(vocoders):
    assert vocoders["base"].config.unit_types == ("hubert",)
    assert vocoders["expressive"].config.unit_types == ("hubert", "pitch", "style")


_RUNTIME_KEYS = ("dtype", "architectures", "_name_or_path")


def test_tiny_config_matches_conversion_and_runs(tmp_path):
    for variant in ("base", "expressive"):
        converted = convert_vocoder(write_official_vocoder(tmp_path / variant, variant), tmp_path / f"{variant}-hf")
        saved = {key: value for key, value in converted.config.to_dict().items() if key not in _RUNTIME_KEYS}
        assert saved == {
            key: value for key, value in tiny_vocoder_config(variant).to_dict().items() if key not in _RUNTIME_KEYS
        }
    model = SpiritLMVocoder(tiny_vocoder_config("expressive"))
    assert model.config.hop_length == 640 and model.config.sampling_rate == 16000
    assert model.decode_string("[St1][Pi2][Hu3][Hu4]", speaker_id=0).shape[0] % 640 == 0


@pytest.mark.parametrize(
    "variant, args, kwargs, error, message",
    [
        ("base", ([],), {}, ValueError, "hubert is empty"),
        ("base", ("",), {}, ValueError, "hubert is empty"),
        ("base", ([1, 501],), {}, ValueError, "hubert unit 501 at position 1 is out of range"),
        ("base", ([1, -1],), {}, ValueError, "hubert unit -1 at position 1 is out of range"),
        ("base", ("1 2 x",), {}, ValueError, "space-separated integers"),
        ("base", (torch.tensor([1.0, 2.0]),), {}, TypeError, "integer unit ids"),
        ("base", (torch.zeros(1, 2, 3, dtype=torch.long),), {}, ValueError, "1-D .* or 2-D"),
        (
            "base",
            ([1, 2],),
            {"speaker_id": "nobody"},
            ValueError,
            "unknown speaker_id 'nobody'; known speakers: 'ex01'",
        ),
        (
            "base",
            ([1, 2],),
            {"speaker_id": 4},
            ValueError,
            "speaker_id=4 is out of range: this vocoder has 4 speakers",
        ),
        ("base", ([1, 2],), {"style_id": "shouting"}, ValueError, "unknown style_id 'shouting'"),
        ("base", ([1, 2],), {"pitch": [1, 2]}, ValueError, "takes no pitch units"),
        ("base", ([[1, 2], [3]],), {"speaker_id": [1]}, ValueError, "`speaker_id` has 1 values but hubert has 2"),
        ("base", ([[1, 2], []],), {}, ValueError, "item 1: hubert is empty"),
        ("expressive", ([1, 2],), {}, ValueError, "needs `pitch` units"),
        ("expressive", ([1, 2], [1, 64], [1, 1]), {}, ValueError, "pitch unit 64 at position 1 is out of range"),
        ("expressive", ([1, 2], [1, 2], [1, 1]), {"style_id": 3}, ValueError, "no global style"),
        ("expressive", ([1] * 12, [1, 2], [1]), {}, ValueError, r"pitch has 2 units for 12 hubert units: .* 6.0 ± 1"),
        ("expressive", ([1] * 12, [1] * 12, [1, 2]), {}, ValueError, "style has 2 units but hubert has 12: with dur"),
        ("expressive", ([1] * 60, [1] * 30, [1]), {}, ValueError, "style has 1 units for 60 hubert units"),
        ("expressive", ([[1, 2]], [1, 2], [[1]]), {}, ValueError, "`pitch` must be one too"),
    ],
)
def test_bad_input_raises_clear_errors(vocoders, variant, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        vocoders[variant].decode_units(*args, **kwargs)


def test_bad_unit_strings_raise_clear_errors(vocoders):
    with pytest.raises(ValueError, match="has no hubert units"):
        vocoders["base"].decode_string("[Text] hello")
    with pytest.raises(ValueError, match="unit string 1 has no hubert units"):
        vocoders["base"].decode_string(["[Hu1]", "[Pi3]"])
    with pytest.raises(ValueError, match="no pitch units .*, which this EXPRESSIVE vocoder needs"):
        vocoders["expressive"].decode_string("[Hu1][Hu2]")
    with pytest.raises(ValueError, match="malformed hubert unit"):
        vocoders["base"].decode_string("[Hu1][Hu2x]")
    with pytest.raises(TypeError, match="unit string or a non-empty list"):
        vocoders["base"].decode_string([])


def test_vocoder_without_duration_predictor(tmp_path):
    shape = {"upsample_rates": [2], "upsample_kernel_sizes": [4], "upsample_initial_channel": 4}
    path = write_official_vocoder(tmp_path / "plain", "base", dur_predictor_params=None, **shape)
    vocoder = load_official_vocoder(path)
    assert vocoder.duration_predictor is None
    assert vocoder.decode_units([1, 2, 3], dur_pred=False).shape == (6,)
    with pytest.raises(ValueError, match="no duration predictor; pass dur_pred=False"):
        vocoder.decode_units([1, 2, 3])


def test_conversion_errors_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="official vocoder file not found: .*config.json"):
        convert_vocoder(tmp_path / "missing", tmp_path / "out")
    path = write_official_vocoder(tmp_path / "voc", "base", upsample_rates=[2], upsample_kernel_sizes=[4])
    (path / "generator.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"generator.pt is not a readable PyTorch checkpoint \(") as info:
        convert_vocoder(path, tmp_path / "out")
    assert "\n" not in str(info.value)
    torch.save({"model": {}}, path / "generator.pt")
    with pytest.raises(ValueError, match="has no 'generator' state dict"):
        convert_vocoder(path, tmp_path / "out")
    torch.save({"generator": {"dict.weight": torch.zeros(3, 8)}}, path / "generator.pt")
    with pytest.raises(ValueError, match="does not match its config.json: missing"):
        convert_vocoder(path, tmp_path / "out")
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        convert_vocoder(path, tmp_path / "out")
    (path / "config.json").write_text(json.dumps({"f0": True}))
    with pytest.raises(ValueError, match="lacks 'upsample_rates'"):
        convert_vocoder(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_validation():
    with pytest.raises(StrictDataclassClassValidationError, match="kernel - rate must be even"):
        SpiritLMVocoderConfig(upsample_rates=[5], upsample_kernel_sizes=[10])
    with pytest.raises(
        StrictDataclassClassValidationError, match="2 speakers names given but the vocoder has None speakers"
    ):
        SpiritLMVocoderConfig(speakers=["a", "b"])
    with pytest.raises(StrictDataclassClassValidationError, match="default_style_id=8 is out of range"):
        SpiritLMVocoderConfig(num_styles=4, default_style_id=8)
    config = SpiritLMVocoderConfig(num_pitch_units=64, num_style_units=100, num_speakers=4)
    assert (config.model_in_dim, config.hubert_to_pitch, config.hubert_to_style, config.hop_length) == (
        512,
        2,
        25,
        640,
    )


def test_conversion_reports_inconsistent_config_on_one_line(tmp_path):
    path = write_official_vocoder(tmp_path / "voc", "base", upsample_rates=[5], upsample_kernel_sizes=[10])
    with pytest.raises(ValueError, match=r"config.json: upsample kernel 10 with rate 5: kernel - rate must be even"):
        load_official_vocoder(path)
