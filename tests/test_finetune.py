import importlib.util
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoProcessor

from transformers_spiritlm import SpiritLMForCausalLM


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune_spiritlm.py"


def load_example():
    spec = importlib.util.spec_from_file_location("finetune_spiritlm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finetune_example_lowers_the_loss_and_saves_a_reloadable_model(tmp_path):
    output_dir = tmp_path / "run"
    summary = load_example().main(["--max-steps", "8", "--output-dir", str(output_dir)])
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
