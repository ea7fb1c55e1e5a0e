import random
from pathlib import Path

import pytest
import torch

from transformers_spiritlm import SpiritLMForCausalLM, units_to_string
from transformers_spiritlm.data import SpiritLMDataCollator
from transformers_spiritlm.evaluation import (
    minimal_pair_accuracy,
    render_segments,
    score_continuations,
    tokenize_pair,
)
from transformers_spiritlm.testing import tiny_lm_config


SPEECH_UNITS = [17, 250, 3, 98, 401, 77, 12, 305, 150, 44, 9, 480, 233, 61, 120, 7, 356, 88, 199, 26]
SPEECH = "[Speech]" + "".join(f"[Hu{unit}]" for unit in SPEECH_UNITS)
TEXT = "[Text]the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SpiritLMForCausalLM(tiny_lm_config()).eval()


def manual_score(model, tokenizer, prompt: str, continuation: str) -> float:
    """The log-probability of the continuation's tokens in the tokenization of the whole string: from the first token
    that is not the prompt's own (without a prompt, BOS then the continuation's tokens)."""
    prompt_ids = tokenizer(prompt).input_ids
    ids = tokenizer(prompt + continuation).input_ids if prompt else prompt_ids + tokenizer(continuation).input_ids[1:]
    start = next(i for i, (a, b) in enumerate(zip(ids, prompt_ids + [None])) if a != b)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
    return sum(log_probs[i - 1, ids[i]].item() for i in range(start, len(ids)))


CASES = [
    ("[Text]the quick", " brown fox"),
    ("", TEXT),
    ("[Speech][Hu3][Hu9][Hu3]", "[Hu44][Hu12][Text]hello"),
    ("[Text]one two three four five six", "[Speech][Hu1]"),
    (SPEECH, "[Text]good morning, how are you doing today?"),
]


def test_scores_are_the_log_likelihood_of_the_continuation(model, tokenizer):
    scores = score_continuations(model, tokenizer, [p for p, _ in CASES], [c for _, c in CASES], batch_size=1)
    expected = [manual_score(model, tokenizer, p, c) for p, c in CASES]
    torch.testing.assert_close(torch.tensor(scores), torch.tensor(expected), rtol=1e-5, atol=1e-4)
    means = score_continuations(model, tokenizer, [p for p, _ in CASES], [c for _, c in CASES], reduction="mean")
    lengths = [len(tokenize_pair(tokenizer, p, c)[1]) for p, c in CASES]
    torch.testing.assert_close(
        torch.tensor(means), torch.tensor(expected) / torch.tensor(lengths), rtol=1e-5, atol=1e-4
    )


def test_a_prompted_continuation_is_scored_on_the_tokens_of_the_whole_string(model, tokenizer):
    # Tokenized alone, "[Text] there" would start with the dummy prefix's "▁": "...time ▁ [Text] there".
    prompt, continuation = "[Text]once upon a time", "[Text] there"
    whole = tokenizer(prompt + continuation).input_ids
    assert tokenizer.convert_ids_to_tokens(whole[-4:]) == ["[Text]", "▁th", "er", "e"]
    assert tokenize_pair(tokenizer, prompt, continuation) == (whole[:-4], whole[-4:])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([whole])).logits[0], dim=-1)
    expected = sum(log_probs[i - 1, whole[i]].item() for i in range(len(whole) - 4, len(whole)))
    (score,) = score_continuations(model, tokenizer, [prompt], [continuation])
    assert score == pytest.approx(expected, abs=1e-4)
    # A prompt whose last token merges with the continuation's first: both are scored as the continuation's.
    merged = tokenizer("[Text]the quick brown").input_ids
    assert tokenizer.convert_ids_to_tokens(tokenizer("[Text]the").input_ids[-2:]) == ["th", "e"]
    assert tokenizer.convert_ids_to_tokens(merged[3:5]) == ["th", "e▁"]
    assert tokenize_pair(tokenizer, "[Text]the", " quick brown") == (merged[:4], merged[4:])


def test_batched_scores_equal_one_by_one(model, tokenizer):
    prompts, continuations = [p for p, _ in CASES] * 2, [c for _, c in CASES] * 2
    one_by_one = score_continuations(model, tokenizer, prompts, continuations, batch_size=1)
    batched = score_continuations(model, tokenizer, prompts, continuations, batch_size=4)
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(one_by_one), rtol=1e-5, atol=1e-4)


def test_segments_render_with_markers_only_at_modality_changes():
    units = {"hubert": [5, 5, 7], "pitch": [1, 2], "style": [3]}
    assert render_segments([{"type": "text", "text": "hi"}, {"type": "speech", "units": units}]) == (
        "[Text]hi[Speech]" + units_to_string(units)
    )
    assert render_segments({"type": "speech", "units": "[Hu1]"}, previous_modality="speech") == "[Hu1]"
    assert render_segments({"type": "text", "text": " there"}, previous_modality="text") == " there"
    assert render_segments({"type": "text", "text": "there"}, previous_modality="speech") == "[Text]there"


def test_segment_items_score_like_their_strings(model, tokenizer):
    units = {"hubert": SPEECH_UNITS}
    from_segments = score_continuations(
        model,
        tokenizer,
        [[{"type": "text", "text": "the quick"}], {"type": "speech", "units": units}],
        [{"type": "text", "text": " brown fox"}, [{"type": "speech", "units": "[Hu3][Hu9]"}]],
    )
    from_strings = score_continuations(model, tokenizer, ["[Text]the quick", SPEECH], [" brown fox", "[Hu3][Hu9]"])
    assert from_segments == from_strings


def train(model, tokenizer, sequences: list[str], steps: int) -> None:
    collator = SpiritLMDataCollator(tokenizer)
    batch = collator([{"input_ids": tokenizer(sequence).input_ids} for sequence in sequences])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def test_trained_continuation_scores_higher_than_a_shuffled_one(tokenizer):
    torch.manual_seed(0)
    model = SpiritLMForCausalLM(tiny_lm_config())
    train(model, tokenizer, [TEXT, SPEECH], steps=20)
    rng = random.Random(0)
    words = ["fox", "jumps", "over", "the", "lazy", "dog"]
    shuffled_words = rng.sample(words, len(words))
    shuffled_units = rng.sample(SPEECH_UNITS[8:], 12)
    speech_prompt = "[Speech]" + "".join(f"[Hu{unit}]" for unit in SPEECH_UNITS[:8])
    pairs = [
        (" " + " ".join(words), " " + " ".join(shuffled_words)),
        ("".join(f"[Hu{u}]" for u in SPEECH_UNITS[8:]), "".join(f"[Hu{u}]" for u in shuffled_units)),
    ]
    prompts = ["[Text]the quick brown", speech_prompt]
    scores = score_continuations(model, tokenizer, prompts * 2, [pair[i] for i in (0, 1) for pair in pairs])
    assert scores[0] > scores[2] and scores[1] > scores[3]
    assert minimal_pair_accuracy(model, tokenizer, pairs, prompts=prompts) == 1.0
    # With no prompt (sWUGGY / sBLIMP style), the trained sentence also beats its shuffled version.
    assert (
        minimal_pair_accuracy(model, tokenizer, [(TEXT, "[Text]" + " ".join(rng.sample(TEXT[6:].split(), 9)))]) == 1.0
    )


def test_bad_inputs_are_clear_errors(model, tokenizer):
    with pytest.raises(ValueError, match="give one prompt per continuation: got 1 prompts for 2 continuations"):
        score_continuations(model, tokenizer, ["[Text]a"], ["b", "c"])
    with pytest.raises(TypeError, match="continuations must be a list"):
        score_continuations(model, tokenizer, None, "[Text]a")
    with pytest.raises(ValueError, match=r"prompt #0 'the cat' has no modality marker; write '\[Text\]the cat'"):
        score_continuations(model, tokenizer, ["the cat"], [" sat"])
    with pytest.raises(ValueError, match="continuation #0 is empty"):
        score_continuations(model, tokenizer, ["[Text]the cat"], [""])
    with pytest.raises(ValueError, match="unknown reduction 'max'"):
        score_continuations(model, tokenizer, None, ["[Text]a"], reduction="max")
    with pytest.raises(ValueError, match="scoring audio needs a speech tokenizer"):
        score_continuations(model, tokenizer, None, [{"type": "speech", "audio": "clip.wav"}])
    with pytest.raises(ValueError, match=r"segment #0 must be a dict with 'type' 'text' or 'speech'"):
        score_continuations(model, tokenizer, None, [[{"text": "hi"}]])
    with pytest.raises(ValueError, match=r"pair #0 must be a \(correct, wrong\) pair"):
        minimal_pair_accuracy(model, tokenizer, [("[Text]a",)])


def test_audio_items_are_scored_through_the_speech_tokenizer(model, tokenizer):
    from transformers_spiritlm.testing.speech_tokenizer import tiny_speech_tokenizer

    speech_tokenizer = tiny_speech_tokenizer()
    clip = Path(__file__).resolve().parent / "fixtures" / "audio" / "speech_2s_16k.wav"
    string = speech_tokenizer.encode_string(clip)
    assert string.count("[Hu") > 20
    prompts = ["[Text]hello", [{"type": "speech", "audio": clip}]]
    continuations = [[{"type": "speech", "audio": str(clip)}], {"type": "text", "text": "hi"}]
    scores = score_continuations(model, tokenizer, prompts, continuations, speech_tokenizer=speech_tokenizer)
    expected = score_continuations(
        model, tokenizer, ["[Text]hello", "[Speech]" + string], ["[Speech]" + string, "[Text]hi"]
    )
    assert scores == expected


def test_eval_pairs_reports_the_accuracy_of_the_log_likelihood_comparisons(tmp_path, capsys):
    import json

    from transformers import AutoProcessor

    from transformers_spiritlm import cli
    from transformers_spiritlm.testing import build_tiny_repo

    repo = build_tiny_repo(tmp_path / "repo", variant="base", vocoder=False)
    processor = AutoProcessor.from_pretrained(repo)
    model = SpiritLMForCausalLM.from_pretrained(repo).eval()
    audio = Path(__file__).resolve().parent / "fixtures" / "audio"
    clip = processor.speech_tokenizer.encode_string(audio / "speech_2s_16k.wav")
    lines = [
        {"correct": "[Text]the cat sat", "wrong": "[Text]cat the sat"},
        {"correct": "[Speech][Hu3][Hu9][Hu12]", "wrong": "[Speech][Hu400][Hu2][Hu77]"},
        {"prompt": "[Text]once upon a time", "correct": " there was a fox", "wrong": " fox a was there"},
        {
            "prompt": [{"type": "speech", "audio": "speech_2s_16k.wav"}],
            "correct": "[Text]hello",
            "wrong": "[Text]olleh",
        },
        {"correct": {"type": "speech", "audio": "speech_2s_16k.wav"}, "wrong": "[Speech][Hu1][Hu2]"},
    ]
    strings = [
        ("", "[Text]the cat sat", "[Text]cat the sat"),
        ("", "[Speech][Hu3][Hu9][Hu12]", "[Speech][Hu400][Hu2][Hu77]"),
        ("[Text]once upon a time", " there was a fox", " fox a was there"),
        ("[Speech]" + clip, "[Text]hello", "[Text]olleh"),
        ("", "[Speech]" + clip, "[Speech][Hu1][Hu2]"),
    ]
    tokenizer = processor.tokenizer
    right = sum(
        manual_score(model, tokenizer, prompt, correct) > manual_score(model, tokenizer, prompt, wrong)
        for prompt, correct, wrong in strings
    )
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    command = ["eval", "pairs", "--repo", str(repo), "--pairs", str(pairs), "--data-root", str(audio)]
    assert cli.main([*command, "--device", "cpu", "--batch-size", "3"]) == 0
    assert capsys.readouterr().out == f"accuracy: {100 * right / 5:.2f}% ({right} of 5 pairs)\n"

    pairs.write_text(json.dumps({"correct": "[Text]a"}) + "\n")
    assert cli.main([*command, "--device", "cpu"]) == 2
    assert f"pairs file {pairs}, line 1: a pair needs 'correct' and 'wrong'" in capsys.readouterr().err
    pairs.write_text(json.dumps({"correct": {"type": "speech", "audio": "gone.wav"}, "wrong": "[Text]a"}) + "\n")
    assert cli.main([*command, "--device", "cpu"]) == 2
    assert "line 1: audio file" in capsys.readouterr().err
