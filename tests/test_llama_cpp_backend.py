"""The GGUF export and the llama.cpp backend (extra `[gguf]`): an f32 export of the tiny BASE and EXPRESSIVE repos
computes transformers' float32 logits and greedy ids, through the pipeline, the streamer, the page and the CLI;
quantized exports stay in the requested modality; bad input is refused before generation."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import LogitsProcessorList, pipeline

from transformers_spiritlm import SpiritLMForCausalLM, SpiritLMModalityLogitsProcessor, SpiritLMProcessor
from transformers_spiritlm.cli import export_gguf as export_gguf_command
from transformers_spiritlm.cli import main
from transformers_spiritlm.extras import MissingExtraError
from transformers_spiritlm.llama_cpp_backend import (
    GGUF_TYPES,
    SpiritLMLlamaCppForCausalLM,
    check_gguf_matches,
    export_gguf,
    gguf_vocabulary,
)


UNITS = "[Hu12][Hu7][Hu99][Hu3][Hu250][Hu41]"
EXPRESSIVE_UNITS = "[St3][Pi10][Hu12][Hu7][Pi2][Hu99][Hu3][Pi40][Hu250][Hu41]"
PROMPTS = {
    "text": [{"type": "text", "text": "Hello, this is spirit"}],
    "speech": "units",
    "interleaved": [{"type": "text", "text": "Good morning,"}, "units", {"type": "text", "text": " how are"}],
}


@pytest.fixture(scope="module")
def exports(gguf_installed, tiny_repo, tiny_base_repo, tmp_path_factory):
    """`variant -> (repo, f32 GGUF, torch float32 model, processor, backend)`."""
    folder = tmp_path_factory.mktemp("gguf")
    loaded = {}
    for variant, repo in [("expressive", tiny_repo), ("base", tiny_base_repo)]:
        path = export_gguf(repo, folder / f"{variant}-f32.gguf")
        model = SpiritLMForCausalLM.from_pretrained(repo, dtype=torch.float32).eval()
        backend = SpiritLMLlamaCppForCausalLM.from_pretrained(repo, path, n_threads=1)
        loaded[variant] = (repo, path, model, SpiritLMProcessor.from_pretrained(repo), backend)
    return loaded


def _prompt_ids(processor, variant: str, kind: str, output_modality: str = "arbitrary") -> torch.Tensor:
    units = {"type": "speech", "units": EXPRESSIVE_UNITS if variant == "expressive" else UNITS}
    prompt = PROMPTS[kind]
    segments = [units] if prompt == "units" else [units if item == "units" else item for item in prompt]
    text = processor.build_prompt(segments, output_modality=output_modality)
    return processor.tokenizer(text, return_tensors="pt")["input_ids"]


def test_export_writes_the_vocabulary_at_the_repos_ids(exports):
    import gguf

    repo, path, model, processor, _ = exports["expressive"]
    reader = gguf.GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    vocab = processor.tokenizer.get_vocab()
    assert len(tokens) == model.config.vocab_size == 1051
    assert all(tokens[index] == token for token, index in vocab.items())
    assert tokens[384:387] == ["[Text]", "[Speech]", "[Hu0]"] and tokens[-1] == "[St99]"
    assert types[384:] == [gguf.TokenType.USER_DEFINED] * (1051 - 384)
    assert types[:3] == [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    assert tokens[3 + 0x41] == "<0x41>" and types[3 + 0x41] == gguf.TokenType.BYTE
    names = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
    assert len(names) == 3 + 9 * model.config.num_hidden_layers and set(names.values()) == {"F32"}
    assert {"token_embd.weight", "output.weight", "blk.1.attn_q.weight"} <= set(names)
    # Padding rows past the layout (the official vocabulary has 32768 rows for 32667 tokens) are unused tokens.
    padded = model.config.__class__.from_dict({**model.config.to_dict(), "vocab_size": 1056})
    tokens, _, types = gguf_vocabulary(repo, padded)
    assert tokens[1051:] == [f"<unused{index}>" for index in range(1051, 1056)]
    assert types[1051:] == [gguf.TokenType.UNUSED] * 5


@pytest.mark.parametrize("variant", ["expressive", "base"])
@pytest.mark.parametrize("kind", ["text", "speech", "interleaved"])
def test_f32_logits_equal_torch_float32(exports, variant, kind):
    _, _, model, processor, backend = exports[variant]
    ids = _prompt_ids(processor, variant, kind)
    with torch.no_grad():
        expected = model(ids).logits[0, -1]
    torch.testing.assert_close(backend.last_logits(ids[0]), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", ["expressive", "base"])
@pytest.mark.parametrize("output_modality", ["text", "speech", "arbitrary"])
def test_greedy_constrained_generation_gives_torchs_ids(exports, variant, output_modality):
    _, _, model, processor, backend = exports[variant]
    ids = _prompt_ids(processor, variant, "interleaved", output_modality)
    processors = LogitsProcessorList([SpiritLMModalityLogitsProcessor(model.config, output_modality)])
    settings = dict(max_new_tokens=24, do_sample=False, logits_processor=processors)
    expected = model.generate(ids, attention_mask=torch.ones_like(ids), **settings)
    assert torch.equal(backend.generate(ids, attention_mask=torch.ones_like(ids), **settings), expected)


def test_a_batch_is_generated_item_by_item_and_padded_as_generate_pads(exports):
    _, _, model, processor, backend = exports["expressive"]
    prompts = [
        processor.build_prompt(PROMPTS["text"], "text"),
        processor.build_prompt([{"type": "text", "text": "A"}]),
    ]
    batch = processor.tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
    settings = dict(max_new_tokens=12, do_sample=False, eos_token_id=[2, 50], pad_token_id=0)
    output = backend.generate(**batch, **settings)
    for row, prompt in enumerate(prompts):
        ids = processor.tokenizer(prompt, return_tensors="pt")["input_ids"]
        alone = backend.generate(ids, **settings)[0, ids.shape[1] :]
        new = output[row, batch["input_ids"].shape[1] :]
        assert torch.equal(new[: len(alone)], alone) and set(new[len(alone) :].tolist()) <= {0}
    assert torch.equal(output[:, : batch["input_ids"].shape[1]], batch["input_ids"])


@pytest.fixture(scope="module")
def pipes(exports):
    """`variant -> (torch pipeline, llama.cpp pipeline)` on the same repo."""
    return {
        variant: (
            pipeline("spirit-lm", model=str(repo), device="cpu"),
            pipeline("spirit-lm", model=backend, processor=str(repo), device="cpu"),
        )
        for variant, (repo, _, _, _, backend) in exports.items()
    }


@pytest.mark.parametrize("variant", ["expressive", "base"])
def test_pipeline_and_stream_give_the_torch_outputs(pipes, variant):
    torch_pipe, gguf_pipe = pipes[variant]
    prompt = [{"type": "speech", "units": EXPRESSIVE_UNITS if variant == "expressive" else UNITS}]
    settings = dict(output_modality="speech", max_new_tokens=40, do_sample=False)
    (expected,) = torch_pipe(prompt, **settings)
    (segment,) = gguf_pipe(prompt, **settings)
    assert segment["units"] == expected["units"] and np.array_equal(segment["audio"], expected["audio"])
    chunks = list(gguf_pipe.stream(prompt, first_chunk_size=5, chunk_size=10, **settings))
    expected_chunks = list(torch_pipe.stream(prompt, first_chunk_size=5, chunk_size=10, **settings))
    assert len(chunks) == len(expected_chunks) >= 2
    for chunk, expected_chunk in zip(chunks, expected_chunks):
        assert chunk["units"] == expected_chunk["units"]
        assert np.array_equal(chunk["audio"], expected_chunk["audio"])
    text = dict(output_modality="text", max_new_tokens=20, do_sample=False)
    assert gguf_pipe("Hello", **text) == torch_pipe("Hello", **text)


def test_the_page_answers_as_with_torch(pipes):
    pytest.importorskip("gradio", reason="the web page needs the [web] extra (gradio)")
    from transformers_spiritlm.web import build_app

    def answer(pipe):
        (handler,) = [function.fn for function in build_app(pipe).fns.values() if function.api_name == "answer"]
        shown, units, audio = [], None, None
        for transcript, _, answer_units, wav in handler(
            None, "Hello", "speech, then text", "speech", 2, 0.8, 0.95, 30, 0, True
        ):
            shown.append(transcript)
            if wav is not None:  # the answer's WAV, removed when the request ends
                units, audio = answer_units, soundfile.read(wav)[0]
        return shown, units, audio

    torch_pipe, gguf_pipe = pipes["expressive"]
    shown, units, audio = answer(gguf_pipe)
    expected_shown, expected_units, expected_audio = answer(torch_pipe)
    assert shown == expected_shown and len(shown) >= 3 and units == expected_units
    np.testing.assert_array_equal(audio, expected_audio)


@pytest.mark.parametrize("output_modality", ["text", "speech"])
def test_cli_generate_with_gguf_prints_and_writes_what_torch_does(exports, tmp_path, capsys, output_modality):
    repo, path, _, _, _ = exports["expressive"]
    arguments = ["generate", "--repo", str(repo), "--units", EXPRESSIVE_UNITS, "--text", " and", "--greedy"]
    arguments += ["--output-modality", output_modality, "--max-new-tokens", "60", "--device", "cpu"]
    with_torch, with_gguf = tmp_path / "torch", tmp_path / "gguf"
    assert main([*arguments, "-o", str(with_torch / "answer.wav")]) == 0
    expected = capsys.readouterr().out
    assert main([*arguments, "-o", str(with_gguf / "answer.wav"), "--gguf", str(path)]) == 0
    assert capsys.readouterr().out == expected.replace(str(with_torch), str(with_gguf))
    if output_modality == "text":
        assert expected.startswith("text:   '") and not with_torch.exists() and not with_gguf.exists()
        return
    assert expected.startswith("speech: ") and " s of audio from units [" in expected
    assert (with_gguf / "answer.wav").read_bytes() == (with_torch / "answer.wav").read_bytes()


@pytest.mark.parametrize("gguf_type", ["q8_0", "q4_0"])
def test_quantized_generation_stays_in_the_requested_modality(exports, tmp_path_factory, gguf_type):
    repo, _, model, processor, _ = exports["expressive"]
    path = export_gguf(repo, tmp_path_factory.mktemp("quantized") / f"{gguf_type}.gguf", gguf_type)
    backend = SpiritLMLlamaCppForCausalLM.from_pretrained(repo, path, n_threads=1)
    config = model.config
    allowed = {"text": range(0, config.text_vocab_size), "speech": range(config.text_vocab_size + 2, 1051)}
    for output_modality, ids in allowed.items():
        prompt = _prompt_ids(processor, "expressive", "interleaved", output_modality)
        processors = LogitsProcessorList([SpiritLMModalityLogitsProcessor(config, output_modality)])
        output = backend.generate(prompt, max_new_tokens=30, do_sample=True, logits_processor=processors)
        new = output[0, prompt.shape[1] :].tolist()
        assert len(new) >= 1 and all(token in ids or token == config.eos_token_id for token in new), new


def test_bad_inputs_are_refused_before_generation(exports, tmp_path, capsys):
    repo, path, model, processor, _ = exports["expressive"]
    # The same model with two text pieces swapped in its tokenizer: the GGUF's vocabulary no longer matches.
    other = tmp_path / "other-repo"
    shutil.copytree(repo, other)
    tokenizer = json.loads((other / "tokenizer.json").read_text())
    first, second = (processor.tokenizer.convert_ids_to_tokens(index) for index in (300, 301))
    vocab = tokenizer["model"]["vocab"]
    vocab[first], vocab[second] = 301, 300
    (other / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ValueError, match=f"token 300 is '{first}' in the GGUF, '{second}' in the repo's tokenizer"):
        SpiritLMLlamaCppForCausalLM.from_pretrained(other, path)
    wider = model.config.__class__.from_dict({**model.config.to_dict(), "intermediate_size": 256})
    with pytest.raises(ValueError, match="llama.feed_forward_length is 128, the repo's config says 256"):
        check_gguf_matches(path, repo, wider)
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip archive")
    with pytest.raises(ValueError, match=r"model.gguf is not a GGUF file \(it starts with b'PK\\x03\\x04'"):
        SpiritLMLlamaCppForCausalLM.from_pretrained(repo, not_gguf)
    with pytest.raises(ValueError, match="unknown GGUF type 'q3_K'; use one of f32, f16, q8_0, q4_0, q4_K_M"):
        export_gguf(repo, tmp_path / "out.gguf", "q3_K")
    with pytest.raises(FileExistsError, match="exists; choose another output or pass force=True"):
        export_gguf(repo, path)

    arguments = ["generate", "--repo", str(repo), "--text", "Hi", "--device", "cpu", "-o", str(tmp_path / "a.wav")]
    assert main([*arguments[:2], str(other), *arguments[3:], "--gguf", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"spiritlm generate: error: {path} does not match {other}: token 300 is")
    assert main([*arguments, "--gguf", str(not_gguf)]) == 2
    assert capsys.readouterr().err == (
        f"spiritlm generate: error: {not_gguf} is not a GGUF file (it starts with b'PK\\x03\\x04', not b'GGUF')\n"
    )
    with pytest.raises(SystemExit) as exit_status:
        main(["export-gguf", "--repo", str(repo), "-o", str(tmp_path / "out.gguf"), "--type", "q3_K"])
    assert exit_status.value.code == 2 and "argument --type: invalid choice: 'q3_K'" in capsys.readouterr().err
    assert main(["export-gguf", "--repo", str(repo), "-o", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"spiritlm export-gguf: error: {path} exists; choose another output or pass force=True (--force) to "
        "overwrite it\n"
    )
    assert not (tmp_path / "out.gguf").exists() and not list(tmp_path.glob(".*.part"))
    assert export_gguf_command.GGUF_TYPES == GGUF_TYPES


def test_a_missing_extra_is_one_line(tiny_repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(
        MissingExtraError, match=r"^running SPIRIT LM with llama.cpp needs the \[gguf\] extra \(llama_"
    ):
        SpiritLMLlamaCppForCausalLM.from_pretrained(tiny_repo, tmp_path / "model.gguf")
    monkeypatch.setitem(sys.modules, "gguf", None)
    assert main(["export-gguf", "--repo", str(tiny_repo), "-o", str(tmp_path / "x.gguf"), "--type", "q8_0"]) == 2
    assert capsys.readouterr().err == (
        "spiritlm export-gguf: error: writing a GGUF file needs the [gguf] extra (gguf is not installed): pip install "
        "'transformers-spiritlm[gguf]' (from a clone: pip install -e '.[gguf]')\n"
    )
    assert not list(tmp_path.iterdir())


def test_eval_stsp_with_gguf_predicts_what_torch_does(exports, tmp_path):
    from transformers_spiritlm.testing.classifiers import build_tiny_text_classifier

    repo, path = exports["expressive"][:2]
    fixtures = Path(__file__).parent / "fixtures" / "stsp"
    command = ["eval", "stsp", "--repo", str(repo), "--manifest", str(fixtures / "manifest.jsonl"), "--data-root",
               str(fixtures / "audio"), "--input-output", "text_text", "--text-classifier",
               str(build_tiny_text_classifier(tmp_path / "classifier")), "--max-new-tokens", "12", "--batch-size", "2",
               "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*command, "-o", str(tmp_path / "torch.jsonl")]) == 0
    assert main([*command, "-o", str(tmp_path / "gguf.jsonl"), "--gguf", str(path)]) == 0
    predictions = (tmp_path / "gguf.jsonl").read_text()
    assert predictions == (tmp_path / "torch.jsonl").read_text() and predictions.count("\n") == 4


def test_serve_with_a_bad_gguf_is_one_line_before_serving(gguf_installed, tiny_repo, tmp_path, capsys):
    pytest.importorskip("gradio", reason="the web page needs the [web] extra (gradio)")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_text("not a model\n")
    assert main(["serve", "--repo", str(tiny_repo), "--gguf", str(not_gguf), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"spiritlm serve: error: {not_gguf} is not a GGUF file (it starts with b'not ', not b'GGUF')\n"
    )
