import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoProcessor, AutoTokenizer, LlamaForCausalLM, pipeline

from transformers_spiritlm import SpiritLMForCausalLM, SpiritLMProcessor, SpiritLMVocoder
from transformers_spiritlm.cli import main
from transformers_spiritlm.init_repo import init_spiritlm_repo
from transformers_spiritlm.testing import tiny_vocoder, write_tiny_text_model
from transformers_spiritlm.testing.speech_tokenizer import tiny_speech_tokenizer
from transformers_spiritlm.tokenization_spiritlm import extend_text_tokenizer


AUDIO = Path(__file__).parent / "fixtures" / "audio" / "speech_2s_16k.wav"
TEXT = "Hello, this is the quick brown fox."
TEXT_TOKENIZERS = ("sentencepiece", "byte-level")


@pytest.fixture(scope="module", params=TEXT_TOKENIZERS)
def text_model_dir(request, tmp_path_factory) -> Path:
    return write_tiny_text_model(tmp_path_factory.mktemp(f"text-{request.param}"), tokenizer=request.param)


@pytest.fixture(scope="module")
def speech_parts(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny BASE speech tokenizer and vocoder (501 hubert units), saved as `init` takes them."""
    root = tmp_path_factory.mktemp("speech-parts")
    tiny_speech_tokenizer(seed=0, variant="base").save_pretrained(root / "speech_tokenizer")
    tiny_vocoder("base").save_pretrained(root / "vocoder")
    return root / "speech_tokenizer", root / "vocoder"


@pytest.mark.parametrize("variant, num_hubert_units", [("base", 501), ("expressive", 37)])
def test_from_text_model_appends_the_layout_and_keeps_the_text_logits(text_model_dir, variant, num_hubert_units):
    text_model = LlamaForCausalLM.from_pretrained(text_model_dir, dtype=torch.float32).eval()
    text_vocab_size = text_model.config.vocab_size
    model = SpiritLMForCausalLM.from_text_model(text_model, variant=variant, num_hubert_units=num_hubert_units)
    tokenizer = extend_text_tokenizer(AutoTokenizer.from_pretrained(text_model_dir), model.config)

    config = model.config
    num_pitch, num_style = (64, 100) if variant == "expressive" else (0, 0)
    assert (config.variant, config.text_vocab_size, config.num_hubert_units) == (
        variant,
        text_vocab_size,
        num_hubert_units,
    )
    assert (config.num_pitch_units, config.num_style_units) == (num_pitch, num_style)
    assert config.vocab_size == len(tokenizer) == text_vocab_size + 2 + num_hubert_units + num_pitch + num_style
    assert model.get_input_embeddings().weight.shape == (config.vocab_size, 64)
    markers_and_hubert = ["[Text]", "[Speech]", "[Hu0]", f"[Hu{num_hubert_units - 1}]"]
    assert tokenizer.convert_tokens_to_ids(markers_and_hubert) == [
        text_vocab_size,
        text_vocab_size + 1,
        text_vocab_size + 2,
        text_vocab_size + 1 + num_hubert_units,
    ]
    if variant == "expressive":
        assert tokenizer.convert_tokens_to_ids(["[Pi0]", "[Pi63]", "[St0]", "[St99]"]) == [
            text_vocab_size + 2 + num_hubert_units,
            text_vocab_size + 2 + num_hubert_units + 63,
            text_vocab_size + 2 + num_hubert_units + 64,
            config.vocab_size - 1,
        ]
    else:
        assert "[Pi0]" not in tokenizer.get_vocab() and "[St0]" not in tokenizer.get_vocab()

    # Unit tokens are single tokens at their ids and decode as the official unit string.
    units = f"[Hu{num_hubert_units - 1}][Hu0][Hu5]"
    expected = [
        config.hubert_token_offset + num_hubert_units - 1,
        config.hubert_token_offset,
        config.hubert_token_offset + 5,
    ]
    if variant == "expressive":
        units = "[St3][Pi7]" + units
        expected = [config.style_token_offset + 3, config.pitch_token_offset + 7, *expected]
    string = "[Speech]" + units + "[Text]" + TEXT
    encoded = tokenizer(string, add_special_tokens=False).input_ids
    assert encoded[: len(expected) + 2] == [config.speech_token_id, *expected, config.text_token_id]
    assert max(encoded[len(expected) + 2 :]) < text_vocab_size
    assert tokenizer.decode(encoded, skip_special_tokens=True) == string

    text_ids = tokenizer(TEXT, return_tensors="pt").input_ids
    assert text_ids.max() < text_vocab_size
    with torch.no_grad():
        expected = text_model(text_ids).logits
        logits = model(text_ids).logits
    assert logits.shape[-1] == config.vocab_size
    torch.testing.assert_close(logits[..., :text_vocab_size], expected, rtol=0, atol=1e-6)


def test_new_rows_are_the_text_mean_plus_small_seeded_noise(text_model_dir):
    text_model = LlamaForCausalLM.from_pretrained(text_model_dir, dtype=torch.float32)
    text_rows = text_model.get_input_embeddings().weight.detach()
    first = SpiritLMForCausalLM.from_text_model(text_model, seed=3)
    again = SpiritLMForCausalLM.from_text_model(text_model, seed=3)
    other = SpiritLMForCausalLM.from_text_model(text_model, seed=4)
    for weight in ("model.embed_tokens.weight", "lm_head.weight"):
        source = text_model.state_dict()[weight]
        new_rows = first.state_dict()[weight][len(source) :]
        torch.testing.assert_close(first.state_dict()[weight][: len(source)], source, rtol=0, atol=0)
        torch.testing.assert_close(new_rows, again.state_dict()[weight][len(source) :], rtol=0, atol=0)
        assert not torch.equal(new_rows, other.state_dict()[weight][len(source) :])
        # mean + N(0, (std / 100)^2): every deviation well within 6 standard deviations of the noise, and not zero
        deviation = (new_rows - source.mean(0)) / (source.std(0) / 100)
        assert deviation.abs().max() < 6 and 0.9 < deviation.std() < 1.1
    assert torch.equal(text_model.get_input_embeddings().weight, text_rows)  # the text model is left untouched


def test_init_writes_a_repo_that_auto_classes_and_the_pipeline_load(text_model_dir, speech_parts, tmp_path, capsys):
    speech_tokenizer_dir, vocoder_dir = speech_parts
    output = tmp_path / "my-spiritlm"
    status = main(
        [
            "init",
            "--text-model",
            str(text_model_dir),
            "--variant",
            "base",
            "-o",
            str(output),
            "--speech-tokenizer",
            str(speech_tokenizer_dir),
            "--vocoder",
            str(vocoder_dir),
        ]
    )
    assert status == 0
    assert capsys.readouterr().out == f"wrote a SPIRIT LM (base) started from {text_model_dir} to {output}\n"
    assert sorted(path.name for path in output.parent.iterdir()) == ["my-spiritlm"]  # no staging folder left

    model = AutoModelForCausalLM.from_pretrained(output)
    processor = AutoProcessor.from_pretrained(output)
    assert type(model) is SpiritLMForCausalLM and type(processor) is SpiritLMProcessor
    assert model.config.text_vocab_size == LlamaForCausalLM.from_pretrained(text_model_dir).config.vocab_size
    assert processor.tokenizer.convert_tokens_to_ids("[Hu500]") == model.config.hubert_token_offset + 500
    assert processor.speech_tokenizer is not None
    assert json.loads((output / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"].endswith(
        "SpiritLMForCausalLM"
    )

    pipe = pipeline("spirit-lm", model=str(output))
    assert isinstance(pipe.vocoder, SpiritLMVocoder)
    [text] = pipe(TEXT, output_modality="text", max_new_tokens=8, do_sample=False)
    assert text["type"] == "text" and isinstance(text["text"], str)
    [speech] = pipe(
        [{"type": "speech", "audio": str(AUDIO)}], output_modality="speech", max_new_tokens=40, do_sample=False
    )
    assert speech["type"] == "speech" and speech["units"].startswith("[Hu") and speech["audio"].size > 0


def test_init_with_fewer_units_generates_only_those_units(text_model_dir, tmp_path):
    output = init_spiritlm_repo(text_model_dir, tmp_path / "k37", num_hubert_units=37)
    pipe = pipeline("spirit-lm", model=str(output))
    assert pipe.processor.speech_tokenizer is None and pipe.vocoder is None
    [speech] = pipe(
        [{"type": "speech", "units": "[Hu3][Hu36][Hu0]"}], output_modality="speech", max_new_tokens=30, do_sample=True
    )
    units = [int(unit) for unit in speech["units"].removeprefix("[Hu").removesuffix("]").split("][Hu")]
    assert len(units) > 0 and max(units) < 37


def test_init_refuses_an_existing_output_without_force(text_model_dir, tmp_path, capsys):
    output = tmp_path / "taken"
    output.mkdir()
    (output / "mine.txt").write_text("keep me")
    assert main(["init", "--text-model", str(text_model_dir), "-o", str(output)]) == 2
    assert (
        capsys.readouterr().err
        == f"spiritlm init: error: {output} already exists; pass --force (force=True) to replace it\n"
    )
    assert (output / "mine.txt").read_text() == "keep me"
    assert main(["init", "--text-model", str(text_model_dir), "-o", str(output), "--force"]) == 0
    assert not (output / "mine.txt").exists() and (output / "model.safetensors").is_file()


def test_init_refuses_mismatched_unit_counts(text_model_dir, speech_parts, tmp_path, capsys):
    speech_tokenizer_dir, _ = speech_parts
    args = ["init", "--text-model", str(text_model_dir), "-o", str(tmp_path / "out")]
    assert main([*args, "--speech-tokenizer", str(speech_tokenizer_dir), "--units", "100"]) == 2
    assert capsys.readouterr().err == (
        "spiritlm init: error: the speech tokenizer takes 501 hubert units but the language model gets 100; use the "
        "same number of units (--units) for all of them\n"
    )
    assert main([*args, "--speech-tokenizer", str(speech_tokenizer_dir), "--variant", "expressive"]) == 2
    assert capsys.readouterr().err == (
        "spiritlm init: error: the speech tokenizer writes ('hubert',) units but a SPIRIT LM of variant 'expressive' "
        "reads ('hubert', 'pitch', 'style'); use --variant base\n"
    )
    assert main([*args, "--units", "0"]) == 2
    assert capsys.readouterr().err == "spiritlm init: error: num_hubert_units=0 must be at least 1\n"
    assert not (tmp_path / "out").exists()


def test_init_refuses_a_text_model_that_is_not_llama(tmp_path, capsys):
    from transformers import MistralConfig, MistralForCausalLM

    source = tmp_path / "mistral"
    MistralForCausalLM(
        MistralConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(source)
    assert main(["init", "--text-model", str(source), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"spiritlm init: error: {source} is model_type 'mistral', not a LLaMA-architecture text model: "
        "from_text_model takes a LlamaForCausalLM (config model_type 'llama', e.g. Llama 2 / 3, TinyLlama, SmolLM) "
        "with its language-modelling head\n"
    )
    with pytest.raises(ValueError, match=r"^MistralForCausalLM is model_type 'mistral', not a LLaMA"):
        SpiritLMForCausalLM.from_text_model(MistralForCausalLM.from_pretrained(source))
    with pytest.raises(ValueError, match=r"is already a SPIRIT LM, not a LLaMA-architecture text model"):
        SpiritLMForCausalLM.from_text_model(
            SpiritLMForCausalLM.from_text_model(
                LlamaForCausalLM.from_pretrained(write_tiny_text_model(tmp_path / "llama"))
            )
        )
    assert not (tmp_path / "out").exists()


def test_a_llama_without_its_head_is_refused(tmp_path):
    from transformers import LlamaModel

    bare = LlamaModel(LlamaForCausalLM.from_pretrained(write_tiny_text_model(tmp_path / "llama")).config)
    with pytest.raises(ValueError, match=r"^the text model is a LlamaModel, not a LlamaForCausalLM: from_text_model"):
        SpiritLMForCausalLM.from_text_model(bare)


def test_tied_embeddings_stay_tied_and_keep_the_text_logits(tmp_path):
    # SmolLM ties its head to its embeddings: the new rows are then shared too.
    source = write_tiny_text_model(tmp_path / "smol", tokenizer="byte-level", tie_word_embeddings=True)
    text_model = LlamaForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    model = SpiritLMForCausalLM.from_text_model(text_model, num_hubert_units=20)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.get_input_embeddings().weight
    assert model.lm_head.weight.shape == (320 + 2 + 20, 64)
    ids = AutoTokenizer.from_pretrained(source)(TEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits[..., :320], text_model(ids).logits, rtol=0, atol=1e-6)
    assert model.generation_config is not text_model.generation_config


def test_init_refuses_a_tokenizer_that_already_has_spiritlm_tokens(tmp_path, capsys):
    source = write_tiny_text_model(tmp_path / "text")
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.add_tokens(["[Text]"])
    tokenizer.save_pretrained(source)
    model = LlamaForCausalLM.from_pretrained(source)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(source)
    assert main(["init", "--text-model", str(source), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "spiritlm init: error: the text tokenizer already has '[Text]' (id 384): it is a SPIRIT LM tokenizer already, "
        "or uses that string for a text token; start from the text model's own tokenizer\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_of_another_size_than_the_text_model_is_a_clear_error(tmp_path):
    source = write_tiny_text_model(tmp_path / "text", vocab_size=400)
    model = SpiritLMForCausalLM.from_text_model(source)
    with pytest.raises(ValueError, match=r"^the text tokenizer has 384 tokens but the text model 400 embedding rows"):
        extend_text_tokenizer(AutoTokenizer.from_pretrained(source), model.config)
