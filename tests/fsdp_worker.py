"""A few training steps of a tiny SPIRIT LM under FSDP2 on CPU, for tests/test_finetune.py.

accelerate applies FSDP only to processes that have an accelerator, so on a CPU-only machine this script shards the
model itself, as accelerate's `fsdp_version: 2` does: `fully_shard` on each module of the wrap-unit class named in
examples/accelerate_fsdp.yaml (Llama's decoder layer), then on the whole model. Run with

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_worker.py OUTPUT.json

Each process trains on its share of every global batch; `train` with `world_size=1` is the single-process reference.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from transformers_spiritlm import SpiritLMForCausalLM
from transformers_spiritlm.data import SpiritLMDataCollator
from transformers_spiritlm.testing import tiny_lm_config, tiny_spiritlm_tokenizer


ACCELERATE_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "accelerate_fsdp.yaml"
NUM_STEPS = 3
GLOBAL_BATCH_SIZE = 6


def build_model() -> SpiritLMForCausalLM:
    torch.manual_seed(0)
    return SpiritLMForCausalLM(tiny_lm_config(variant="base"))


def global_batches() -> list[list[dict]]:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(4, 40, (NUM_STEPS, GLOBAL_BATCH_SIZE), generator=generator)
    return [
        [{"input_ids": [1, *torch.randint(3, 880, (int(n),), generator=generator).tolist()]} for n in row]
        for row in lengths
    ]


def train(model, batches, rank: int = 0, world_size: int = 1) -> list[float]:
    """AdamW steps; the loss of each step is the mean over the tokens of the whole global batch, as one process."""
    collator = SpiritLMDataCollator(tiny_spiritlm_tokenizer(model.config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for batch in batches:
        num_targets = torch.tensor(sum(len(feature["input_ids"]) - 1 for feature in batch))
        share = len(batch) // world_size
        local = collator(batch[rank * share : (rank + 1) * share])
        loss = model(**local, num_items_in_batch=num_targets, use_cache=False).loss
        # The gradients are averaged over the processes: scale each process's share of the global sum back up.
        (loss * world_size).backward()
        optimizer.step()
        optimizer.zero_grad()
        loss = loss.detach()
        if world_size > 1:
            dist.all_reduce(loss)
        losses.append(loss.item())
    return losses


def main(output_path: str) -> None:
    from torch.distributed.fsdp import FSDPModule, fully_shard

    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    model = build_model()
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    # The wrap unit of the shipped accelerate config, as accelerate's TRANSFORMER_BASED_WRAP finds it: by class name.
    config = yaml.safe_load(ACCELERATE_CONFIG.read_text())["fsdp_config"]
    for module in model.modules():
        if type(module).__name__ == config["fsdp_transformer_layer_cls_to_wrap"]:
            fully_shard(module)
    fully_shard(model)
    losses = train(model, global_batches(), rank, world_size)
    local = sum(parameter.to_local().numel() for parameter in model.parameters())
    if rank == 0:
        result = {
            "losses": losses,
            "world_size": world_size,
            "sharded_layers": sum(isinstance(layer, FSDPModule) for layer in model.model.layers),
            "local_parameter_fraction": local / num_parameters,
        }
        with open(output_path, "w") as file:
            json.dump(result, file)
    # Every rank done with gloo before any tears its group down: a rank leaving early can abort the other
    # ("terminate called without an active exception") while its gloo threads still wait.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
