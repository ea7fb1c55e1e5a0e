import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import sentencepiece
import torch
from official_checkpoints import write_official_checkpoints, write_official_fcpe
from official_hubert import weights_digest
from official_lm import (
    official_lm_state_dict,
    write_official_lm,
    write_official_tokenizer,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    pipeline,
)

from transformers_spiritlm import (
    SpiritLMConfig,
    SpiritLMForCausalLM,
    SpiritLMProcessor,
    SpiritLMSpeechTokenizer,
    SpiritLMVocoder,
)
from transformers_spiritlm.conversion import ConversionError, convert_pitch, convert_speech_tokenizer, convert_style
from transformers_spiritlm.conversion.convert_lm import LMConversionError, convert_lm
from transformers_spiritlm.conversion.convert_spiritlm_to_hf import convert_spiritlm_to_hf, main, self_check
from transformers_spiritlm.conversion.convert_tokenizer import (
    SlowTokenizerReference,
    TokenizerConversionError,
    convert_tokenizer,
)


FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZER_RECORD = json.loads((FIXTURES / "tokenizer" / "official_tokenizer.json").read_text(encoding="utf-8"))
TEXT_MODEL = (FIXTURES / "tokenizer" / TOKENIZER_RECORD["text_sentencepiece_model"]).read_bytes()
LM_RECORD = json.loads((FIXTURES / "lm" / "official_lm.json").read_text())
LM_LOGITS = np.load(FIXTURES / "lm" / "official_lm_logits.npz")


@pytest.fixture(scope="module", params=sorted(TOKENIZER_RECORD["configs"]))
def converted_tokenizer(request, tmp_path_factory):
    record = TOKENIZER_RECORD["configs"][request.param]
    official_dir = tmp_path_factory.mktemp("official")
    write_official_tokenizer(official_dir, "expressive", record["unit_storage"], record["legacy"], TEXT_MODEL)
    tokenizer, official = convert_tokenizer(official_dir, "expressive")
    tokenizer.save_pretrained(official_dir / "converted")
    return AutoTokenizer.from_pretrained(official_dir / "converted"), official, record


def test_converted_tokenizer_ids_equal_official(converted_tokenizer):
    tokenizer, _, record = converted_tokenizer
    ids = [tokenizer(string).input_ids for string in TOKENIZER_RECORD["strings"]]
    assert ids == record["ids"]


def test_converted_tokenizer_decodes_as_official(converted_tokenizer):
    tokenizer, _, record = converted_tokenizer
    decoded = [
        tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) for ids in record["ids"]
    ]
    assert decoded == record["decoded"]


def test_sentencepiece_reference_ids_equal_official(converted_tokenizer):
    _, official, record = converted_tokenizer
    reference = SlowTokenizerReference(official)
    assert [reference.encode(string) for string in TOKENIZER_RECORD["strings"]] == record["ids"]


@pytest.mark.parametrize("legacy", [None, False])
def test_sentencepiece_units_round_trip_as_the_official_pipeline_expects(tmp_path, legacy):
    write_official_tokenizer(tmp_path, "expressive", "sentencepiece", legacy, TEXT_MODEL)
    tokenizer, _ = convert_tokenizer(tmp_path, "expressive")
    prompt = "[Speech][St71][Pi39][Hu99][Hu49][Text] and they went[Speech][Hu3]"
    ids = tokenizer(prompt).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == prompt


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "unit_storage, breakage, message",
    [
        (
            "added_tokens",
            lambda d: _edit_json(
                d / "tokenizer_config.json",
                lambda c: c["added_tokens_decoder"].__setitem__(
                    "402", {**c["added_tokens_decoder"]["402"], "content": "[Hu1]"}
                ),
            ),
            r"id 402 is '\[Hu1\]', expected '\[Hu0\]' \(\[Text\]=400, \[Speech\]=401, \[HuN\]=402\+N",
        ),
        (
            "added_tokens",
            lambda d: _edit_json(d / "tokenizer_config.json", lambda c: c["added_tokens_decoder"].pop("401")),
            r"id 401 is nothing, expected '\[Speech\]'",
        ),
        (
            "added_tokens",
            lambda d: _edit_json(
                d / "tokenizer_config.json",
                lambda c: c["added_tokens_decoder"].__setitem__("1067", {"content": "[Xx0]"}),
            ),
            r"expressive tokenizer in .* has 668 tokens after the 400 text pieces; the official layout has 667",
        ),
        (
            "added_tokens",
            lambda d: _edit_json(
                d / "tokenizer_config.json",
                lambda c: c["added_tokens_decoder"]["400"].__setitem__("special", True),
            ),
            r"added token '\[Text\]' has .*'special': True.*needs plain",
        ),
        (
            "sentencepiece",
            lambda d: (d / "tokenizer.model").write_bytes(b"not a model"),
            r"tokenizer.model is not a SentencePiece model",
        ),
        (
            "sentencepiece",
            lambda d: (d / "special_tokens_map.json").unlink(),
            r"official tokenizer file not found: .*special_tokens_map.json",
        ),
    ],
)
def test_tokenizer_files_off_the_official_layout_are_clear_errors(tmp_path, unit_storage, breakage, message):
    write_official_tokenizer(tmp_path, "expressive", unit_storage, None, TEXT_MODEL)
    breakage(tmp_path)
    with pytest.raises((TokenizerConversionError, FileNotFoundError), match=message) as error:
        convert_tokenizer(tmp_path, "expressive")
    assert "\n" not in str(error.value)


def test_base_tokenizer_may_carry_the_expressive_units(tmp_path):
    write_official_tokenizer(tmp_path, "expressive", "sentencepiece", None, TEXT_MODEL)
    tokenizer, official = convert_tokenizer(tmp_path, "base")
    assert len(official.unit_tokens) == 667 and tokenizer.convert_tokens_to_ids("[St99]") == 400 + 666
    write_official_tokenizer(tmp_path, "base", "sentencepiece", None, TEXT_MODEL)
    with pytest.raises(TokenizerConversionError, match=r"id 903 is nothing, expected '\[Pi0\]'"):
        convert_tokenizer(tmp_path, "expressive")


@pytest.mark.parametrize("variant", ["base", "expressive"])
def test_converted_lm_logits_equal_official(tmp_path, variant):
    record = LM_RECORD["variants"][variant]
    official_dir = write_official_lm(
        tmp_path / "ckpt", variant, seed=LM_RECORD["seed"], sentencepiece_model=TEXT_MODEL
    )
    config = json.loads((official_dir / "config.json").read_text())
    assert weights_digest(official_lm_state_dict(config, seed=LM_RECORD["seed"])) == record["weights_sha256"]
    tokenizer, official = convert_tokenizer(official_dir, variant)
    convert_lm(official_dir, tmp_path / "out", variant, official.text_vocab_size, dtype="float32")

    model = SpiritLMForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = tokenizer(record["probe"], return_tensors="pt").input_ids
    assert ids[0].tolist() == record["ids"]
    with torch.no_grad():
        logits = model(ids).logits[0]
    torch.testing.assert_close(logits, torch.from_numpy(LM_LOGITS[variant]), rtol=1e-5, atol=1e-5)
    expected_units = (0, 0) if variant == "base" else (64, 100)
    assert (model.config.num_pitch_units, model.config.num_style_units) == expected_units
    assert model.config.text_token_id == 400 and model.generation_config.pad_token_id == 0


def test_lm_conversion_streams_into_shards_and_casts(tmp_path):
    official_dir = write_official_lm(
        tmp_path / "ckpt", "base", shards=3, sentencepiece_model=TEXT_MODEL, pad_token_id=-1
    )
    config = convert_lm(official_dir, tmp_path / "out", "base", 400, dtype="bfloat16", max_shard_size="40KB")
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    official = official_lm_state_dict(json.loads((official_dir / "config.json").read_text()))
    for name, file_name in index["weight_map"].items():
        with safe_open(tmp_path / "out" / file_name, "pt") as shard:
            assert torch.equal(shard.get_tensor(name), official[name].to(torch.bfloat16))
    assert config.dtype == "bfloat16" and config.pad_token_id == 0  # -1 (no padding token) is no id
    assert SpiritLMForCausalLM.from_pretrained(tmp_path / "out").dtype == torch.bfloat16


def test_truncated_or_missing_lm_weights_are_one_line_errors(tmp_path):
    official_dir = write_official_lm(tmp_path / "ckpt", "base", sentencepiece_model=TEXT_MODEL)
    weights = official_dir / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(LMConversionError, match=r"pytorch_model.bin is truncated or corrupt, re-download it") as error:
        convert_lm(official_dir, tmp_path / "out", "base", 400)
    assert "\n" not in str(error.value)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"official language model file not found: .*pytorch_model.bin"):
        convert_lm(official_dir, tmp_path / "out", "base", 400)


def test_lm_weights_that_do_not_fit_the_config_are_clear_errors(tmp_path):
    official_dir = write_official_lm(tmp_path / "ckpt", "base", sentencepiece_model=TEXT_MODEL)
    _edit_json(official_dir / "config.json", lambda c: c.__setitem__("num_hidden_layers", 3))
    with pytest.raises(LMConversionError, match=r"missing \['model.layers.2.self_attn.q_proj.weight'"):
        convert_lm(official_dir, tmp_path / "out", "base", 400)
    _edit_json(official_dir / "config.json", lambda c: c.update(num_hidden_layers=2, vocab_size=800))
    with pytest.raises(LMConversionError, match=r"vocab_size=800 is smaller than the SPIRIT LM token layout"):
        convert_lm(official_dir, tmp_path / "out", "base", 400)


# The whole converter. Each variant and each unit storage is converted once (BASE with added-token units,
# EXPRESSIVE with SentencePiece units) from tiny official-format checkpoints/ trees.
FULL_CONVERSIONS = {"base": "added_tokens", "expressive": "sentencepiece"}


@pytest.fixture(scope="module")
def official_trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    trees = {
        unit_storage: write_official_checkpoints(
            root / unit_storage, unit_storage=unit_storage, sentencepiece_model=TEXT_MODEL
        )
        for unit_storage in set(FULL_CONVERSIONS.values())
    }
    return trees, write_official_fcpe(root / "fcpe.pt")


def _convert(official_trees, variant: str, output_dir: Path, *extra: str, tree: Path | None = None) -> int:
    trees, fcpe = official_trees
    tree = tree or trees[FULL_CONVERSIONS[variant]]
    argv = ["--checkpoints-dir", str(tree), "--variant", variant, "--output-dir", str(output_dir)]
    return main([*argv, "--dtype", "float32", "--fcpe-checkpoint", str(fcpe), *extra])


@pytest.fixture(scope="module", params=sorted(FULL_CONVERSIONS))
def converted_repo(request, official_trees, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("converted") / f"spiritlm-{request.param}"
    assert _convert(official_trees, request.param, output_dir) == 0
    return request.param, output_dir


def test_converted_repo_has_the_design_layout(converted_repo):
    _, repo = converted_repo
    files = {str(path.relative_to(repo)) for path in repo.rglob("*") if path.is_file()}
    assert files == {
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "preprocessor_config.json", "processor_config.json", "README.md",
        "speech_tokenizer/config.json", "speech_tokenizer/model.safetensors", "vocoder/config.json",
        "vocoder/model.safetensors", "spiritlm_remote.py",
    }  # fmt: skip
    assert json.loads((repo / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"] == (
        "spiritlm_remote.SpiritLMForCausalLM"
    )
    card = (repo / "README.md").read_text()
    assert card.startswith("---\nlicense: other\nlicense_name: fair-noncommercial-research-license\n")
    assert "FAIR Noncommercial Research License" in card and "English only" in card
    assert not list(repo.parent.glob(".*partial"))


def test_converted_repo_loads_through_the_public_api(converted_repo, official_trees):
    variant, repo = converted_repo
    config = AutoConfig.from_pretrained(repo)
    assert type(config) is SpiritLMConfig and config.variant == variant
    model = AutoModelForCausalLM.from_pretrained(repo)
    assert type(model) is SpiritLMForCausalLM and model.dtype == torch.float32
    processor = AutoProcessor.from_pretrained(repo)
    assert type(processor) is SpiritLMProcessor
    assert processor.speech_tokenizer.config.unit_types == config.unit_types
    vocoder = SpiritLMVocoder.from_pretrained(repo, subfolder="vocoder")
    assert vocoder.config.num_pitch_units == (64 if variant == "expressive" else None)

    official_dir = official_trees[0][FULL_CONVERSIONS[variant]] / "spiritlm_model" / f"spirit-lm-{variant}-7b"
    reference = SlowTokenizerReference(convert_tokenizer(official_dir, variant)[1])
    for string in TOKENIZER_RECORD["strings"][:60]:
        if variant == "expressive" or not any(unit in string for unit in ("[Pi", "[St")):
            assert processor.tokenizer(string).input_ids == reference.encode(string)

    official = json.loads((official_dir / "config.json").read_text())
    llama = LlamaForCausalLM(LlamaConfig.from_dict(official)).eval()
    llama.load_state_dict(official_lm_state_dict(official))
    ids = processor.tokenizer("[Text]the[Speech][Hu3][Hu7]", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids).logits, llama(ids).logits, rtol=0, atol=0)

    pipe = pipeline("spirit-lm", model=str(repo))
    output = pipe("Hello", output_modality="text", max_new_tokens=3, do_sample=False, return_prompt=True)
    # The same greedy continuation from the official-format Llama, with the text-only constraint of the official
    # forbidden ids (markers and every unit) as a plain mask, decoded by SentencePiece itself.
    generated = reference.encode(output["prompt"])
    with torch.no_grad():
        for _ in range(3):
            logits = llama(torch.tensor([generated])).logits[0, -1]
            logits[config.text_vocab_size :] = -float("inf")
            generated.append(int(logits.argmax()))
    sentencepiece_model = sentencepiece.SentencePieceProcessor(model_file=str(official_dir / "tokenizer.model"))
    assert output["segments"] == [{"type": "text", "text": sentencepiece_model.decode(generated[-3:]).strip()}]


def test_existing_output_is_refused_without_force(converted_repo, official_trees, capsys):
    variant, repo = converted_repo
    before = (repo / "config.json").stat().st_mtime_ns
    assert _convert(official_trees, variant, repo) == 2
    error = capsys.readouterr().err
    assert error == f"spiritlm convert: error: {repo} already exists; pass --force to replace it\n"
    assert (repo / "config.json").stat().st_mtime_ns == before


def test_force_replaces_an_existing_output_and_pushes(official_trees, tmp_path, monkeypatch):
    calls = []

    class FakeHfApi:
        def create_repo(self, repo_id, exist_ok=False):
            calls.append(("create_repo", repo_id, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload_folder", repo_id, sorted(path.name for path in Path(folder_path).iterdir())))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    output_dir = tmp_path / "repo"
    output_dir.mkdir()
    (output_dir / "stale.txt").write_text("from an older conversion")
    (tmp_path / ".repo.k1ll3d.partial").mkdir()  # what an interrupted conversion leaves
    extra = ("--force", "--max-shard-size", "100KB", "--push-to-hub", "someone/spiritlm-base")
    assert _convert(official_trees, "base", output_dir, *extra) == 0
    assert not (output_dir / "stale.txt").exists()
    assert (output_dir / "model.safetensors.index.json").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]
    assert calls[0] == ("create_repo", "someone/spiritlm-base", True)
    assert calls[1][:2] == ("upload_folder", "someone/spiritlm-base") and "README.md" in calls[1][2]
    assert 'pipeline("spirit-lm", model="someone/spiritlm-base")' in (output_dir / "README.md").read_text()


def test_killing_the_converter_leaves_no_output(official_trees, tmp_path):
    trees, _ = official_trees
    output_dir = tmp_path / "repo"
    command = [sys.executable, "-m", "transformers_spiritlm.conversion.convert_spiritlm_to_hf"]
    command += ["--checkpoints-dir", str(trees["added_tokens"]), "--variant", "base", "--output-dir", str(output_dir)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each log line reaches the pipe when printed
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment)
    # The converter's first log line comes right after it created its partial folder: kill it then, mid-run.
    first_line = process.stdout.readline()
    assert first_line.startswith("tokenizer: ") and list(tmp_path.glob(".repo.*.partial"))
    process.kill()
    process.wait()
    assert not output_dir.exists()
    assert [path.name.endswith(".partial") for path in tmp_path.iterdir()] == [True]


def _break_copy(official_trees, tmp_path, unit_storage: str, breakage) -> Path:
    tree = shutil.copytree(official_trees[0][unit_storage], tmp_path / "checkpoints")
    breakage(tree)
    return tree


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "breakage, message",
    [
        (
            lambda tree: (tree / "speech_tokenizer" / "hifigan_spiritlm_base" / "generator.pt").unlink(),
            r"spiritlm convert: error: official checkpoint file not found: \S+/speech_tokenizer/hifigan_spiritlm_base/generator.pt",
        ),
        (
            lambda tree: _truncate(tree / "spiritlm_model" / "spirit-lm-base-7b" / "pytorch_model.bin"),
            r"spiritlm convert: error: \S+/spirit-lm-base-7b/pytorch_model.bin is truncated or corrupt, re-download it",
        ),
        (
            lambda tree: _truncate(tree / "speech_tokenizer" / "hubert_25hz" / "mhubert_base_25hz.pt"),
            r"spiritlm convert: error: .*mhubert_base_25hz.pt",
        ),
        (
            lambda tree: _edit_json(
                tree / "spiritlm_model" / "spirit-lm-base-7b" / "tokenizer_config.json",
                lambda config: config["added_tokens_decoder"]["401"].__setitem__("content", "[Speech2]"),
            ),
            r"spiritlm convert: error: base tokenizer in \S+ does not follow the official SPIRIT LM id layout: id 401 is '\[Speech2\]'",
        ),
    ],
)
def test_broken_official_files_are_one_line_errors(official_trees, tmp_path, capsys, breakage, message):
    tree = _break_copy(official_trees, tmp_path, "added_tokens", breakage)
    output_dir = tmp_path / "repo"
    assert _convert(official_trees, "base", output_dir, tree=tree) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert re.fullmatch(message + r"[^\n]*", error.rstrip("\n").split("\n")[-1]), error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints"]


def test_one_conversion_error_for_every_converter():
    # one class, importable under the old names; the LM and tokenizer errors are kinds of it
    assert convert_pitch.ConversionError is convert_style.ConversionError is ConversionError
    assert convert_speech_tokenizer.ConversionError is ConversionError
    assert issubclass(LMConversionError, ConversionError) and issubclass(TokenizerConversionError, ConversionError)
    assert issubclass(ConversionError, ValueError)


@pytest.fixture(scope="module")
def official_base(tmp_path_factory) -> Path:
    return write_official_checkpoints(
        tmp_path_factory.mktemp("official"), variants=("base",), sentencepiece_model=TEXT_MODEL
    )


@pytest.fixture(scope="module")
def bfloat16_repo(official_base, tmp_path_factory) -> Path:
    return convert_spiritlm_to_hf(
        official_base, "base", tmp_path_factory.mktemp("bf16") / "repo", dtype="bfloat16", log=lambda line: None
    )


def test_bfloat16_conversion_rounds_the_language_model_only(official_base, bfloat16_repo):
    official = json.loads((official_base / "spiritlm_model" / "spirit-lm-base-7b" / "config.json").read_text())
    expected = official_lm_state_dict(official)
    converted = load_file(bfloat16_repo / "model.safetensors")
    assert {tensor.dtype for tensor in converted.values()} == {torch.bfloat16}
    for name, tensor in converted.items():
        torch.testing.assert_close(tensor, expected[name].to(torch.bfloat16), rtol=0, atol=0)
    assert json.loads((bfloat16_repo / "config.json").read_text())["dtype"] == "bfloat16"
    for part in ("speech_tokenizer", "vocoder"):
        assert {tensor.dtype for tensor in load_file(bfloat16_repo / part / "model.safetensors").values()} == {
            torch.float32
        }


def _official_tokenizer(official_base):
    return convert_tokenizer(official_base / "spiritlm_model" / "spirit-lm-base-7b", "base")[1]


def test_self_check_passes_on_a_good_repo(official_base, bfloat16_repo):
    rows = self_check(bfloat16_repo, _official_tokenizer(official_base), "base")
    assert [row[0] for row in rows] == [
        "config",
        "tokenizer",
        "tokenizer",
        "language model",
        "speech tokenizer",
        "vocoder",
    ]


def test_self_check_failures(official_base, bfloat16_repo, tmp_path, monkeypatch):
    official_tokenizer = _official_tokenizer(official_base)
    with pytest.raises(RuntimeError, match=r"self-check: config.json reloads as SpiritLMConfig \('base'\)"):
        self_check(bfloat16_repo, official_tokenizer, "expressive")

    with monkeypatch.context() as patch:
        patch.setattr(SlowTokenizerReference, "encode", lambda self, text: [1, 2, 3])
        with pytest.raises(
            RuntimeError, match=r"self-check: tokenizer ids \[1, .*\] differ from the official .*\[1, 2, 3\]"
        ):
            self_check(bfloat16_repo, official_tokenizer, "base")

    broken = tmp_path / "nan-lm"
    shutil.copytree(bfloat16_repo, broken)
    weights = load_file(broken / "model.safetensors")
    weights["lm_head.weight"][:] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        RuntimeError, match=r"self-check: LM forward gave logits of shape \(1, \d+, \d+\) with non-finite"
    ):
        self_check(broken, official_tokenizer, "base")

    with monkeypatch.context() as patch:
        patch.setattr(SpiritLMSpeechTokenizer, "encode_units", lambda self, *args, **kwargs: {"hubert": []})
        with pytest.raises(RuntimeError, match=r"self-check: 1 s of audio gave unit streams \['hubert'\], expected"):
            self_check(bfloat16_repo, official_tokenizer, "base")

    with monkeypatch.context() as patch:
        patch.setattr(SpiritLMVocoder, "decode_string", lambda self, *args, **kwargs: torch.full((4,), float("nan")))
        with pytest.raises(RuntimeError, match=r"self-check: the vocoder gave a waveform of shape \(4,\)"):
            self_check(bfloat16_repo, official_tokenizer, "base")
