"""SPIRIT LM generation without the pipeline: processor -> model.generate -> processor + vocoder.

    python examples/generate_interleaved.py                                   # tiny random model, offline
    python examples/generate_interleaved.py --repo path/to/spiritlm-expressive --audio question.wav

Every step the `"spirit-lm"` pipeline runs, spelled out: build left-padded prompts from interleaved segments, restrict
the output modality with a logits processor passed to `generate`, then split the generated ids into text and speech
segments and vocode the speech.
"""

import argparse
import tempfile
from pathlib import Path

import soundfile
import torch
from transformers import AutoModelForCausalLM, AutoProcessor, LogitsProcessorList

import transformers_spiritlm  # noqa: F401  (registers the SPIRIT LM classes)
from transformers_spiritlm import SpiritLMModalityLogitsProcessor, SpiritLMVocoder
from transformers_spiritlm.cli import DEMO_PROMPT_WAV
from transformers_spiritlm.testing import build_tiny_repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="converted SPIRIT LM repo (default: a tiny random one)")
    parser.add_argument("--audio", default=str(DEMO_PROMPT_WAV), help="spoken prompt")
    parser.add_argument("--output-dir", default="generated", help="where speech outputs are written")
    args = parser.parse_args()
    repo = args.repo or build_tiny_repo(Path(tempfile.mkdtemp()) / "tiny")

    processor = AutoProcessor.from_pretrained(repo)  # feature extractor + tokenizer + speech tokenizer
    model = AutoModelForCausalLM.from_pretrained(repo).eval()
    vocoder = SpiritLMVocoder.from_pretrained(repo, subfolder="vocoder").eval()

    prompts = [
        [{"type": "speech", "audio": args.audio}],  # speech -> speech
        [{"type": "text", "text": "The capital of France is"}, {"type": "speech", "audio": args.audio}],
    ]
    output_modality = "speech"
    inputs = processor(prompts, output_modality=output_modality)  # left-padded input_ids / attention_mask
    modality = SpiritLMModalityLogitsProcessor(model.config, output_modality)
    torch.manual_seed(0)
    with torch.no_grad():
        sequences = model.generate(
            **inputs,
            logits_processor=LogitsProcessorList([modality]),
            max_new_tokens=100,
            do_sample=True,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
    outputs = processor.post_process_generation(sequences, inputs["attention_mask"], output_modality, vocoder=vocoder)

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for index, segments in enumerate(outputs):
        for number, segment in enumerate(segments):
            if segment["type"] == "text":
                print(f"prompt {index}: text {segment['text']!r}")
                continue
            path = output_dir / f"prompt{index}-{number}.wav"
            soundfile.write(path, segment["audio"], segment["sampling_rate"])
            print(f"prompt {index}: speech {segment['units'][:60]}... -> {path}")
    return 0


if __name__ == "__main__":
    main()  # returns 0; errors raise (tests run this script in-process)
