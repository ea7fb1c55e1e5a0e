import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoProcessor, pipeline

from transformers_spiritlm import SpiritLMForCausalLM


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune_spiritlm.py"


def load_example():
    spec = importlib.util.spec_from_file_location("finetune_spiritlm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finetune_example_lowers_the_loss_and_saves_a_reloadable_model(tmp_path, capsys):
    output_dir = tmp_path / "run"
    summary = load_example().main(["--max-steps", "8", "--output-dir", str(output_dir)])
    printed = capsys.readouterr()
    assert "'loss'" not in printed.out + printed.err  # quiet by default: no Trainer log line per step
    assert "loss " in printed.out and "in 8 steps" in printed.out
    assert summary["steps"] == 8
    assert summary["last_loss"] < summary["first_loss"]

    state = json.loads((output_dir / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 8 and losses[-1] == summary["last_loss"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (output_dir / name).is_file(), name
    assert (output_dir / "speech_tokenizer" / "config.json").is_file()

    model = AutoModelForCausalLM.from_pretrained(output_dir)
    assert type(model) is SpiritLMForCausalLM
    processor = AutoProcessor.from_pretrained(output_dir)
    ids = processor.tokenizer("[Text]the cat sat on the mat", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_finetune_example_verbose_prints_the_trainer_log_lines(tmp_path, capsys):
    load_example().main(["--max-steps", "2", "--output-dir", str(tmp_path / "run"), "--verbose"])
    printed = capsys.readouterr()
    assert (printed.out + printed.err).count("'loss'") == 2


def test_lora_without_peft_is_an_argument_error(monkeypatch, capsys):
    example = load_example()
    monkeypatch.setitem(sys.modules, "peft", None)  # as if the [train] extra were not installed
    with pytest.raises(SystemExit) as exit_info:
        example.parse_args(["--lora", "--output-dir", "unused"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            ": error: --lora needs peft: pip install 'transformers-spiritlm[train]' (from a clone: pip install -e "
            "'.[train]')"
        )
    )


def run_example(*args: str) -> dict:
    return load_example().main([*args])


def logged_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def greedy_ids(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(input_ids, max_new_tokens=12, do_sample=False, pad_token_id=0)


def test_lora_adapter_saves_reloads_and_merges_to_the_same_greedy_ids(tmp_path):
    peft = pytest.importorskip("peft")
    adapter_dir, merged_dir = tmp_path / "adapter", tmp_path / "merged"
    summary = run_example(
        "--lora",
        "--lora-r",
        "4",
        "--lora-modules-to-save",
        "embed_tokens",
        "--merged-output-dir",
        str(merged_dir),
        "--max-steps",
        "6",
        "--output-dir",
        str(adapter_dir),
    )
    assert summary["last_loss"] < summary["first_loss"]
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert config["modules_to_save"] == ["embed_tokens"]
    assert config["base_model_name_or_path"] == summary["base_model"] == str(adapter_dir / "base-model")
    assert not (adapter_dir / "model.safetensors").exists()

    base = AutoModelForCausalLM.from_pretrained(summary["base_model"]).eval()
    base_embeddings = base.get_input_embeddings().weight.detach().clone()
    adapted = peft.PeftModel.from_pretrained(base, adapter_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert type(merged) is SpiritLMForCausalLM

    input_ids = (
        AutoProcessor.from_pretrained(merged_dir).tokenizer("[Speech][Hu3][Hu9]", return_tensors="pt").input_ids
    )
    with torch.no_grad():
        adapted_logits, merged_logits = adapted(input_ids).logits, merged(input_ids).logits
    torch.testing.assert_close(merged_logits, adapted_logits, rtol=1e-4, atol=1e-5)
    assert torch.equal(greedy_ids(merged, input_ids), greedy_ids(adapted, input_ids))
    # The adapter and the trained embeddings did change the model.
    assert not torch.equal(merged.get_input_embeddings().weight, base_embeddings)
    with adapted.disable_adapter(), torch.no_grad():
        base_logits = adapted(input_ids).logits
    assert (base_logits - adapted_logits).abs().max() > 1e-3


def test_gradient_checkpointing_and_padding_free_batches_give_the_same_losses(tmp_path):
    reference = run_example("--max-steps", "3", "--output-dir", str(tmp_path / "plain"))["losses"]
    checkpointed = run_example("--gradient-checkpointing", "--max-steps", "3", "--output-dir", str(tmp_path / "gc"))
    packed = run_example("--padding-free", "--max-steps", "3", "--output-dir", str(tmp_path / "packed"))
    assert len(reference) == 3
    assert checkpointed["activation_checkpointing"] and not packed["activation_checkpointing"]
    # Recomputing activations repeats the same float operations in the same order: the same bits.
    assert checkpointed["losses"] == reference
    # Packing changes the matmul shapes, hence the float summation order: equal to float32 rounding.
    torch.testing.assert_close(packed["losses"], reference, rtol=1e-5, atol=0)


def test_streaming_dataset_trains_five_steps(tmp_path, capsys):
    summary = run_example("--streaming", "--max-steps", "5", "--output-dir", str(tmp_path / "run"))
    assert summary["steps"] == 5 and len(summary["losses"]) == 5
    assert summary["last_loss"] < summary["first_loss"]
    assert "training sequences" not in capsys.readouterr().out  # nothing was counted: the data were streamed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_gloo():
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend: CPU processes cannot form a process group")


def launch(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_ddp_run_of_the_example_matches_the_single_process_losses(tmp_path):
    require_gloo()
    steps = ("--max-steps", "3")
    reference = run_example(*steps, "--batch-size", "6", "--output-dir", str(tmp_path / "single"))["losses"]
    result = launch(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            *("--config_file", str(EXAMPLE.parent / "accelerate_ddp.yaml"), "--num_processes", "2"),
            *("--main_process_port", str(free_port())),
            str(EXAMPLE),
            *steps,
            *("--batch-size", "3", "--output-dir", str(tmp_path / "ddp")),
        ]
    )
    assert "trained with MULTI_CPU over 2 process(es)" in result.stdout
    # Measured: < 3e-7 relative apart (the all-reduce sums the gradients in another order); 1e-5 leaves room for
    # other CPUs' kernels, while a wrong split of the global batch moves the losses by > 1e-3.
    torch.testing.assert_close(logged_losses(tmp_path / "ddp"), reference, rtol=1e-5, atol=0)
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "ddp")) is SpiritLMForCausalLM


def test_fsdp_run_with_decoder_layers_as_units_matches_the_single_process_losses(tmp_path):
    require_gloo()
    worker_path = Path(__file__).resolve().parent / "fsdp_worker.py"
    spec = importlib.util.spec_from_file_location("fsdp_worker", worker_path)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    reference = worker.train(worker.build_model(), worker.global_batches())

    output = tmp_path / "fsdp.json"
    launch(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *("--nproc_per_node", "2", "--master_port", str(free_port())),
            str(worker_path),
            str(output),
        ]
    )
    result = json.loads(output.read_text())
    assert result["world_size"] == 2 and result["sharded_layers"] == 2
    assert result["local_parameter_fraction"] == pytest.approx(0.5, abs=0.01)  # each process holds half the weights
    # Measured: < 2e-7 relative apart; same tolerance and reason as for DDP.
    torch.testing.assert_close(result["losses"], reference, rtol=1e-5, atol=0)


def test_manifest_may_give_textgrids_instead_of_words(tmp_path):
    fixtures = Path(__file__).resolve().parent / "fixtures"
    manifest = [json.loads(line) for line in (fixtures / "audio" / "aligned" / "words.jsonl").read_text().splitlines()]
    (tmp_path / "clip_00.TextGrid").write_bytes((fixtures / "alignments" / "clip_00.TextGrid").read_bytes())
    lines = [{"audio": "a.flac", "textgrid": "clip_00.TextGrid"}, {"audio": "b.flac", "words": manifest[1]["words"]}]
    (tmp_path / "words.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for streaming in (False, True):
        rows = list(load_example().load_aligned_dataset(tmp_path, streaming=streaming))
        assert [row["words"] for row in rows] == [manifest[0]["words"], manifest[1]["words"]]
        assert rows[0]["audio"] == str(tmp_path.resolve() / "a.flac")


ALIGNED = Path(__file__).resolve().parent / "fixtures" / "audio" / "aligned"


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance between the characters of the two strings, over the reference length."""
    previous = list(range(len(hypothesis) + 1))
    for i, expected in enumerate(reference, 1):
        current = [i]
        for j, produced in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (expected != produced)))
        previous = current
    return previous[-1] / len(reference)


def write_pairs_manifest(folder: Path, num_clips: int) -> list[dict]:
    """A manifest of `{"audio", "text"}` lines for the first espeak-ng clips (audio given by absolute path)."""
    records = [json.loads(line) for line in (ALIGNED / "words.jsonl").read_text().splitlines()][:num_clips]
    pairs = [{"audio": str(ALIGNED / record["audio"]), "text": record["text"]} for record in records]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pairs.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    return pairs


def transcribe(repo: Path, pairs: list[dict]) -> list[str]:
    pipe = pipeline("spirit-lm", model=str(repo))
    outputs = [
        pipe([{"type": "speech", "audio": pair["audio"]}], output_modality="text", max_new_tokens=60, do_sample=False)
        for pair in pairs
    ]
    return ["".join(segment["text"] for segment in output).strip() for output in outputs]


def test_asr_fine_tuning_lowers_the_loss_and_the_character_error_of_the_pipeline(tiny_base_repo, tmp_path):
    pairs = write_pairs_manifest(tmp_path / "data", num_clips=2)
    before = transcribe(tiny_base_repo, pairs)
    summary = run_example(
        "--task", "asr", "--model", str(tiny_base_repo), "--data-dir", str(tmp_path / "data"),
        "--manifest", "pairs.jsonl", "--output-dir", str(tmp_path / "run"),
        "--max-steps", "30", "--batch-size", "2", "--learning-rate", "6e-3",
    )  # fmt: skip
    assert summary["last_loss"] < summary["first_loss"] / 4
    after = transcribe(tmp_path / "run", pairs)
    errors_before = [character_error_rate(pair["text"], text) for pair, text in zip(pairs, before)]
    errors_after = [character_error_rate(pair["text"], text) for pair, text in zip(pairs, after)]
    # Measured: 3.5 and 4.2 (random speech and text units) before, 0.23 and 0.25 after 30 steps.
    assert min(errors_before) > 1 and max(errors_after) < 0.5, (before, after)


def test_tts_fine_tuning_trains_on_the_units_of_each_transcript(tiny_base_repo, tmp_path):
    write_pairs_manifest(tmp_path / "data", num_clips=2)
    summary = run_example(
        "--task", "tts", "--model", str(tiny_base_repo), "--data-dir", str(tmp_path / "data"),
        "--manifest", "pairs.jsonl", "--output-dir", str(tmp_path / "run"), "--max-steps", "4", "--batch-size", "2",
    )  # fmt: skip
    assert summary["steps"] == 4 and summary["last_loss"] < summary["first_loss"]


def test_task_excludes_kinds_and_target_modality(capsys):
    example = load_example()
    for extra, option in ((["--kinds", "speech"], "kinds"), (["--target-modality", "text"], "target-modality")):
        with pytest.raises(SystemExit) as exit_info:
            example.parse_args(["--task", "asr", "--output-dir", "unused", *extra])
        assert exit_info.value.code == 2
        assert (
            capsys.readouterr()
            .err.splitlines()[-1]
            .endswith(f": error: --task trains on asr pairs only: drop --{option}")
        )
