import itertools
import json
import random
import re
from pathlib import Path

import datasets
import pytest
import torch
from transformers import DataCollatorWithFlattening

from transformers_spiritlm import units_to_string
from transformers_spiritlm.data import (
    SpiritLMDataCollator,
    SpiritLMSequenceBuilder,
    WordAlignment,
    build_sequences,
    extract_units,
    parse_word_alignments,
    tokenize_sequences,
    tokenize_task_pairs,
)
from transformers_spiritlm.testing import tiny_lm_config, tiny_text_tokenizer
from transformers_spiritlm.testing.speech_tokenizer import tiny_speech_tokenizer


# 2 s of speech: hubert unit i is the value i, so a unit in a string tells the frame (time i / 25 s) it came from.
FRAME_UNITS = {"hubert": list(range(50))}
WORDS = [
    {"word": "the", "start": 0.10, "end": 0.30},
    {"word": "cat", "start": 0.30, "end": 0.62},
    {"word": "sat", "start": 0.70, "end": 1.00},
    {"word": "on", "start": 1.00, "end": 1.18},
    {"word": "the", "start": 1.18, "end": 1.40},
    {"word": "mat", "start": 1.52, "end": 1.90},
]
SEGMENT = re.compile(r"(\[Text\]|\[Speech\])((?:(?!\[Text\]|\[Speech\]).)*)")


def random_expressive_units(seed: int, seconds: int = 4) -> dict[str, list[int]]:
    rng = random.Random(seed)
    return {
        "hubert": [rng.randrange(6) for _ in range(25 * seconds)],
        "pitch": [rng.randrange(4) for _ in range(int(12.5 * seconds))],
        "style": [rng.randrange(3) for _ in range(seconds)],
    }


def segments(sequence: str) -> list[tuple[str, str]]:
    parts = SEGMENT.findall(sequence)
    assert "".join(marker + body for marker, body in parts) == sequence
    return [("text" if marker == "[Text]" else "speech", body) for marker, body in parts]


@pytest.mark.parametrize("seed", range(20))
def test_speech_spans_only_hold_units_of_their_time_range(seed):
    builder = SpiritLMSequenceBuilder(switch_probability=0.5)
    spans = builder.interleaved_spans(WORDS, FRAME_UNITS, seed=seed)
    assert [word for span in spans for word in span.words] == parse_word_alignments(WORDS)
    speech = [(span, seg) for span, seg in zip(spans, segments(builder.render(spans, FRAME_UNITS)))]
    for span, (modality, body) in speech:
        assert modality == span.modality
        if modality == "text":
            assert body == " ".join(word.word for word in span.words)
            continue
        frames = [int(value) for value in re.findall(r"\[Hu(\d+)\]", body)]
        assert body == "".join(f"[Hu{frame}]" for frame in frames)
        assert frames == [i for i in range(50) if span.start <= i / 25 < span.end]


def test_every_boundary_switches_at_probability_one_and_none_at_zero():
    always = SpiritLMSequenceBuilder(switch_probability=1.0).interleaved_spans(WORDS, FRAME_UNITS, seed=3)
    assert [len(span.words) for span in always] == [1] * len(WORDS)
    assert all(a.modality != b.modality for a, b in itertools.pairwise(always))
    never = SpiritLMSequenceBuilder(switch_probability=0.0).interleaved_sequence(WORDS, FRAME_UNITS, seed=3)
    assert never in ("[Text]the cat sat on the mat", "[Speech]" + "".join(f"[Hu{i}]" for i in range(3, 48)))


@pytest.mark.parametrize("seed", range(10))
def test_markers_appear_exactly_at_modality_switches(seed):
    builder = SpiritLMSequenceBuilder(switch_probability=0.4)
    spans = builder.interleaved_spans(WORDS, FRAME_UNITS, seed=seed)
    sequence = builder.render(spans, FRAME_UNITS)
    assert sequence.count("[Text]") + sequence.count("[Speech]") == len(spans)
    assert [modality for modality, _ in segments(sequence)] == [span.modality for span in spans]
    assert all(a.modality != b.modality for a, b in itertools.pairwise(spans))
    assert all(body for _, body in segments(sequence))


def test_seeds_reproduce_and_differ():
    builder = SpiritLMSequenceBuilder(switch_probability=0.5)
    runs = [builder.interleaved_sequence(WORDS, FRAME_UNITS, seed=seed) for seed in range(8)]
    assert runs == [builder.interleaved_sequence(WORDS, FRAME_UNITS, seed=seed) for seed in range(8)]
    assert len(set(runs)) > 4


def test_span_string_over_the_whole_utterance_is_units_to_string():
    builder = SpiritLMSequenceBuilder()
    for seed in range(5):
        units = random_expressive_units(seed)
        assert builder.span_string(units, 0.0, 4.0) == units_to_string(units)
        assert builder.speech_sequence(units) == "[Speech]" + units_to_string(units)
    base = SpiritLMSequenceBuilder(unit_types=("hubert",))
    assert base.speech_sequence(units) == "[Speech]" + units_to_string({"hubert": units["hubert"]})


def test_expressive_spans_start_with_their_current_style_and_pitch():
    units = {"hubert": list(range(100)), "pitch": list(range(50)), "style": [7, 8, 9, 10]}
    builder = SpiritLMSequenceBuilder()
    # [1.3, 2.1): hubert frames 33..52, pitch frames 16 (active at 1.3 s, from 1.28 s) .. 26, style 1 (from 1 s) and 2.
    assert builder.span_units(units, 1.3, 2.1) == {
        "hubert": list(range(33, 53)),
        "pitch": list(range(16, 27)),
        "style": [8, 9],
    }
    string = builder.span_string(units, 1.3, 2.1)
    assert string.startswith("[St8][Pi16][Hu33][Pi17][Hu34][Hu35]")
    assert "[Hu49][St9][Pi25][Hu50][Hu51][Pi26][Hu52]" in string and string.endswith("[Hu52]")


def test_speech_span_is_deduplicated_within_the_span():
    units = {"hubert": [5] * 10 + [6] * 10 + [6] * 10 + [5] * 20}
    builder = SpiritLMSequenceBuilder()
    assert builder.span_string(units, 0.0, 2.0) == "[Hu5][Hu6][Hu5]"
    assert builder.span_string(units, 0.6, 2.0) == "[Hu6][Hu5]"
    assert builder.span_string(units, 0.8, 1.2) == "[Hu6]"


def test_a_speech_span_without_any_frame_becomes_text():
    words = [("a", 0.0, 0.5), ("b", 0.50, 0.51), ("c", 0.52, 1.0)]
    builder = SpiritLMSequenceBuilder(switch_probability=1.0)
    for seed in range(6):
        spans = builder.interleaved_spans(words, {"hubert": list(range(25))}, seed=seed)
        assert all(a.modality != b.modality for a, b in itertools.pairwise(spans))
        assert not any(span.modality == "speech" and [w.word for w in span.words] == ["b"] for span in spans)


def test_text_asr_and_tts_sequences():
    builder = SpiritLMSequenceBuilder()
    units = {"hubert": [3, 3, 4, 9]}
    words = [("hello", 0.0, 0.08), ("world", 0.08, 0.16)]
    assert builder.text_sequence(words) == "[Text]hello world"
    assert builder.asr_sequence(units, words) == "[Speech][Hu3][Hu4][Hu9][Text]hello world"
    assert builder.tts_sequence(units, words) == "[Text]hello world[Speech][Hu3][Hu4][Hu9]"


def test_word_alignments_in_columnar_and_tuple_form():
    columnar = {"word": ["a", "b"], "start": [0.0, 0.5], "end": [0.5, 1.0]}
    expected = [WordAlignment("a", 0.0, 0.5), WordAlignment("b", 0.5, 1.0)]
    assert parse_word_alignments(columnar) == expected
    assert parse_word_alignments([("a", 0, 0.5), ("b", 0.5, 1)]) == expected


@pytest.mark.parametrize(
    "words, message",
    [
        ([], "the word alignment is empty"),
        ({"word": [], "start": [], "end": []}, "the word alignment is empty"),
        ([("a", 0.5, 0.4)], r"word #0 'a' ends at 0.4 s, not after its start 0.5 s"),
        ([("a", -0.1, 0.4)], r"word #0 'a' starts at -0.1 s"),
        ([("a", 0.0, 0.6), ("b", 0.5, 0.9)], r"word #1 'b' starts at 0.5 s, before word #0 'a' ends at 0.6 s"),
        ([("a", 0.0, 0.5), ("b", 300.0, 900.0)], r"word #1 'b' ends at 900.0 s but the speech is only 2.00 s long"),
        ([("", 0.0, 0.5)], "word alignment #0 has an empty or non-string word"),
        ([("a", 0.0)], r"word alignment #0 is \('a', 0.0\); expected"),
        ({"word": ["a"], "start": [0.0]}, r"need 'word', 'start' and 'end' lists; missing \['end'\]"),
    ],
)
def test_bad_alignments_are_clear_errors(words, message):
    with pytest.raises(ValueError, match=message):
        SpiritLMSequenceBuilder().interleaved_sequence(words, FRAME_UNITS, seed=0)


def test_bad_units_and_options_are_clear_errors():
    builder = SpiritLMSequenceBuilder()
    with pytest.raises(ValueError, match=r"units must be a dict with at least a 'hubert' list"):
        builder.speech_sequence([1, 2, 3])
    with pytest.raises(ValueError, match=r"units\['hubert'\] is empty"):
        builder.speech_sequence({"hubert": []})
    with pytest.raises(ValueError, match=r"units have no \['pitch', 'style'\] stream"):
        SpiritLMSequenceBuilder(unit_types=("hubert", "pitch", "style")).speech_sequence({"hubert": [1]})
    with pytest.raises(ValueError, match="switch_probability=1.5 must be between 0 and 1"):
        SpiritLMSequenceBuilder(switch_probability=1.5)
    with pytest.raises(ValueError, match="unknown sequence kind 'speach'"):
        builder.build("speach", FRAME_UNITS)


def test_build_sequences_on_a_dataset_is_independent_of_batching():
    rows = {"units": [FRAME_UNITS, {"hubert": [i % 7 for i in range(50)]}], "words": [WORDS, WORDS[:3]]}
    dataset = datasets.Dataset.from_dict(rows)
    builder = SpiritLMSequenceBuilder(switch_probability=0.5)
    kinds = ("speech", "text", "interleaved", "asr")
    built = build_sequences(dataset, kinds=kinds, builder=builder, seed=11, batch_size=1)
    assert built.column_names == ["sequence", "kind"]
    assert built["kind"] == list(kinds) * 2
    assert built["sequence"] == build_sequences(dataset, kinds=kinds, builder=builder, seed=11)["sequence"]
    assert built["sequence"][2] == builder.interleaved_sequence(WORDS, FRAME_UNITS, seed=[11, 0])
    assert built["sequence"][5] == "[Text]the cat sat"
    with pytest.raises(ValueError, match=r"example 0: the word alignment is empty"):
        build_sequences(datasets.Dataset.from_dict({"units": [FRAME_UNITS], "words": [[]]}), kinds=("text",))
    with pytest.raises(ValueError, match=r"dataset has no column\(s\) \['words'\]"):
        build_sequences(datasets.Dataset.from_dict({"units": [FRAME_UNITS]}), kinds=("interleaved",))


def test_task_pairs_end_the_prompt_with_the_marker_of_the_answer():
    builder = SpiritLMSequenceBuilder()
    units = {"hubert": [3, 3, 4, 9]}
    assert builder.task_pair("asr", units, " hello \n world ") == ("[Speech][Hu3][Hu4][Hu9][Text]", "hello world")
    assert builder.task_pair("tts", units, "hello world") == ("[Text]hello world[Speech]", "[Hu3][Hu4][Hu9]")
    with pytest.raises(ValueError, match=r"^unknown task 'stt'; use one of 'asr', 'tts'$"):
        builder.task_pair("stt", units, "hello")
    with pytest.raises(ValueError, match=r"^the transcript is ' '; ASR and TTS pairs need a non-empty text$"):
        builder.task_pair("asr", units, " ")


def test_asr_and_tts_pairs_carry_the_loss_on_the_answer_only(tokenizer):
    dataset = datasets.Dataset.from_dict(
        {"units": [{"hubert": [3, 3, 4, 9]}], "text": ["hello world"], "audio": ["clip.wav"]}
    )
    space, bos, eos = tokenizer.convert_tokens_to_ids("▁"), 1, 2
    hello_world = tokenizer.convert_tokens_to_ids(["h", "el", "lo", "▁", "w", "or", "l", "d"])
    units = [386 + 3, 386 + 4, 386 + 9]
    asr = tokenize_task_pairs(dataset, tokenizer, "asr")
    assert asr.column_names == ["input_ids", "labels"]
    # <s> ▁ [Speech] [Hu3] [Hu4] [Hu9] [Text] | hello world </s>
    assert asr[0]["input_ids"] == [bos, space, 385, *units, 384, *hello_world, eos]
    assert asr[0]["labels"] == [-100] * 7 + [*hello_world, eos]
    tts = tokenize_task_pairs(dataset, tokenizer, "tts")
    # <s> ▁ [Text] hello world [Speech] | [Hu3] [Hu4] [Hu9] </s>
    assert tts[0]["input_ids"] == [bos, space, 384, *hello_world, 385, *units, eos]
    assert tts[0]["labels"] == [-100] * 12 + [*units, eos]
    # The prompt's ids are those the processor gives at inference: the tokenizer on the prompt alone.
    assert asr[0]["input_ids"][:7] == tokenizer("[Speech][Hu3][Hu4][Hu9][Text]").input_ids

    batch = SpiritLMDataCollator(tokenizer)([asr[0], tts[0]])
    assert batch["labels"].tolist() == [asr[0]["labels"], tts[0]["labels"]]
    with pytest.raises(ValueError, match=r"^unknown task 'stt'"):
        tokenize_task_pairs(dataset, tokenizer, "stt")
    with pytest.raises(ValueError, match=r"dataset has no column\(s\) \['text'\]"):
        tokenize_task_pairs(dataset.remove_columns("text"), tokenizer, "asr")
    with pytest.raises(ValueError, match=r"^example 0: the transcript is ''"):
        tokenize_task_pairs(datasets.Dataset.from_dict({"units": [{"hubert": [1]}], "text": [""]}), tokenizer, "tts")


def test_collator_pads_masks_and_labels(tokenizer):
    dataset = tokenize_sequences(
        datasets.Dataset.from_dict({"sequence": ["[Text]hello world[Speech][Hu3][Hu4]", "[Speech][Hu7]"]}), tokenizer
    )
    features = list(dataset)
    long_ids, short_ids = features[0]["input_ids"], features[1]["input_ids"]
    # Like the official (transformers 4.x) tokenizer: <s>, then the dummy-prefix "▁" before a leading marker.
    assert short_ids == [1, tokenizer.convert_tokens_to_ids("▁"), 385, 386 + 7]
    pad = tokenizer.pad_token_id
    batch = SpiritLMDataCollator(tokenizer)(features)
    n, k = len(long_ids), len(short_ids)
    assert batch["input_ids"].tolist() == [long_ids, short_ids + [pad] * (n - k)]
    assert batch["attention_mask"].tolist() == [[1] * n, [1] * k + [0] * (n - k)]
    assert batch["labels"].tolist() == [long_ids, short_ids + [-100] * (n - k)]

    left = SpiritLMDataCollator(tokenizer, padding_side="left", pad_token_id=0, pad_to_multiple_of=8)(features)
    width = -(-n // 8) * 8
    assert left["input_ids"][1].tolist() == [0] * (width - k) + short_ids
    assert left["labels"][0].tolist() == [-100] * (width - n) + long_ids


def test_collator_keeps_loss_on_the_target_modality_only(tokenizer):
    hu3, pi2, st1, hu9 = 386 + 3, 386 + 501 + 2, 386 + 501 + 64 + 1, 386 + 9
    text_ids = tokenizer("hello", add_special_tokens=False).input_ids
    assert text_ids and all(2 < i < 384 for i in text_ids)
    ids = [1, 385, hu3, pi2, st1, 384, *text_ids, 385, hu9]  # <s>[Speech][Hu3][Pi2][St1][Text]hello[Speech][Hu9]
    speech = SpiritLMDataCollator(tokenizer, target_modality="speech")([{"input_ids": ids}])["labels"][0].tolist()
    assert speech == [-100, 385, hu3, pi2, st1, -100, *[-100] * len(text_ids), 385, hu9]
    text = SpiritLMDataCollator(tokenizer, target_modality="text")([{"input_ids": ids}])["labels"][0].tolist()
    assert text == [-100, -100, -100, -100, -100, 384, *text_ids, -100, -100]
    prompt_masked = [-100] * 6 + ids[6:]
    given = SpiritLMDataCollator(tokenizer, target_modality="text")([{"input_ids": ids, "labels": prompt_masked}])
    assert given["labels"][0].tolist() == [-100] * 6 + text_ids + [-100, -100]


def test_collator_truncates_and_reports_bad_features(tokenizer):
    collator = SpiritLMDataCollator(tokenizer, max_length=4)
    batch = collator([{"input_ids": list(range(10, 20))}])
    assert batch["input_ids"].tolist() == [[10, 11, 12, 13]]
    with pytest.raises(ValueError, match=r"feature #0 has no 'input_ids' \(keys: \['sequence'\]\)"):
        collator([{"sequence": "[Text]hi"}])
    with pytest.raises(ValueError, match="feature #0 has 2 input_ids but 1 labels"):
        collator([{"input_ids": [1, 2], "labels": [1]}])
    with pytest.raises(ValueError, match="unknown target_modality 'audio'"):
        SpiritLMDataCollator(tokenizer, target_modality="audio")
    with pytest.raises(
        ValueError, match=r"tokenizer lacks the SPIRIT LM tokens \['\[Text\]', '\[Speech\]', '\[Hu0\]'\]"
    ):
        SpiritLMDataCollator(tiny_text_tokenizer())
    swapped = tiny_text_tokenizer()
    swapped.add_tokens(["[Speech]", "[Text]", "[Hu0]"])  # ids 384, 385, 386: the markers the wrong way round
    with pytest.raises(ValueError, match=r"\[Text\], \[Speech\] and \[Hu0\] have ids 385, 384 and 386, not three in"):
        SpiritLMDataCollator(swapped)


def test_collator_batch_trains_a_causal_lm(tokenizer):
    from transformers_spiritlm import SpiritLMForCausalLM

    torch.manual_seed(0)
    model = SpiritLMForCausalLM(tiny_lm_config())
    features = [{"input_ids": tokenizer("[Speech][Hu3][Hu4][Text]hi").input_ids}, {"input_ids": [1, 385, 390]}]
    batch = SpiritLMDataCollator(tokenizer)(features)
    loss = model(**batch).loss
    unpadded = model(input_ids=torch.tensor([features[1]["input_ids"]]), labels=torch.tensor([[1, 385, 390]])).loss
    assert torch.isfinite(loss) and loss.item() > 0
    # Padding does not leak into the loss: the short row alone gives the same per-token loss on its 2 targets.
    logits = model(**batch).logits[1, :2]
    manual = torch.nn.functional.cross_entropy(logits, torch.tensor([385, 390]))
    torch.testing.assert_close(manual, unpadded)


def test_padding_free_collator_packs_like_data_collator_with_flattening(tokenizer):
    features = [{"input_ids": [1, 385, 390, 391, 384, 20]}, {"input_ids": [1, 384, 30]}, {"input_ids": [1, 385, 400]}]
    packed = SpiritLMDataCollator(tokenizer, padding_free=True)(features)
    assert sorted(packed) == ["input_ids", "labels", "position_ids"]
    assert packed["input_ids"].tolist() == [[1, 385, 390, 391, 384, 20, 1, 384, 30, 1, 385, 400]]
    assert packed["labels"].tolist() == [[-100, 385, 390, 391, 384, 20, -100, 384, 30, -100, 385, 400]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 0, 1, 2, 0, 1, 2]]
    reference = DataCollatorWithFlattening(return_tensors="pt")(features)
    for key in ("input_ids", "labels", "position_ids"):
        assert torch.equal(packed[key], reference[key]), key

    speech = SpiritLMDataCollator(tokenizer, padding_free=True, target_modality="speech", max_length=4)(features)
    assert speech["labels"].tolist() == [[-100, 385, 390, 391, -100, -100, -100, -100, 385, 400]]
    with pytest.raises(ValueError, match="padding_free=True writes no padding: drop pad_to_multiple_of"):
        SpiritLMDataCollator(tokenizer, padding_free=True, pad_to_multiple_of=8)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_padding_free_batch_gives_the_padded_loss_and_gradients(tokenizer, attn_implementation):
    from transformers_spiritlm import SpiritLMForCausalLM

    torch.manual_seed(0)
    model = SpiritLMForCausalLM(tiny_lm_config(attn_implementation=attn_implementation))
    generator = torch.Generator().manual_seed(1)
    features = [
        {"input_ids": [1, *torch.randint(3, 900, (length,), generator=generator).tolist()]}
        for length in (40, 7, 23, 2)
    ]
    results = []
    for padding_free in (False, True):
        model.zero_grad()
        # Without a KV cache, as under the Trainer: transformers only derives the packed mask when there is none.
        loss = model(**SpiritLMDataCollator(tokenizer, padding_free=padding_free)(features), use_cache=False).loss
        loss.backward()
        results.append((loss.detach(), [parameter.grad.clone() for parameter in model.parameters()]))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-6, atol=1e-6)
    for packed_grad, padded_grad in zip(packed_grads, padded_grads):
        torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-4, atol=1e-6)


ALIGNED = Path(__file__).resolve().parent / "fixtures" / "audio" / "aligned"


@pytest.fixture(scope="module")
def aligned_clips():
    records = [json.loads(line) for line in (ALIGNED / "words.jsonl").read_text().splitlines()][3:5]
    return datasets.Dataset.from_dict(
        {"audio": [str(ALIGNED / record["audio"]) for record in records], "words": [r["words"] for r in records]}
    )


@pytest.fixture(scope="module")
def speech_tokenizer():
    return tiny_speech_tokenizer(seed=0)


def test_extract_units_matches_the_speech_tokenizer_on_each_clip(aligned_clips, speech_tokenizer):
    expected = [speech_tokenizer.encode_units(path) for path in aligned_clips["audio"]]
    assert all(len(units["hubert"]) > 40 for units in expected)
    assert extract_units(aligned_clips, speech_tokenizer, batch_size=1)["units"] == expected
    as_audio = aligned_clips.cast_column("audio", datasets.Audio())
    with_audio_column = extract_units(as_audio, speech_tokenizer, batch_size=2)
    assert with_audio_column["units"] == expected
    assert with_audio_column.features["audio"] == datasets.Audio()
    # The espeak-ng word times fit the extracted units: every kind builds.
    built = build_sequences(with_audio_column, kinds=("speech", "text", "interleaved", "asr", "tts"))
    assert built["sequence"][0] == "[Speech]" + units_to_string(expected[0])
    assert built["sequence"][1] == "[Text]one two three four five six"


def test_extract_units_reuses_its_cache_for_the_same_speech_tokenizer(aligned_clips, tmp_path):
    aligned_clips.save_to_disk(tmp_path / "clips")
    on_disk = datasets.load_from_disk(tmp_path / "clips")
    calls = []
    speech_tokenizer = tiny_speech_tokenizer(seed=0)
    encode_units = speech_tokenizer.encode_units
    speech_tokenizer.encode_units = lambda *args, **kwargs: calls.append(1) or encode_units(*args, **kwargs)
    first = extract_units(on_disk, speech_tokenizer)
    assert len(calls) == 1
    second = extract_units(on_disk, speech_tokenizer)
    assert len(calls) == 1 and second["units"] == first["units"]
    assert second.cache_files == first.cache_files
    other = tiny_speech_tokenizer(seed=1)
    assert extract_units(on_disk, other).cache_files != first.cache_files


def test_streaming_datasets_build_tokenize_and_extract_like_in_memory_ones(aligned_clips, speech_tokenizer, tokenizer):
    expected = tokenize_sequences(build_sequences(extract_units(aligned_clips, speech_tokenizer), seed=3), tokenizer)
    rows = aligned_clips.to_list()
    # A stream with no schema (as `load_dataset("json", streaming=True)` can give): columns come from its first row.
    schemaless = datasets.IterableDataset.from_generator(lambda: iter(rows))
    for stream in (aligned_clips.to_iterable_dataset(), schemaless):
        streamed = tokenize_sequences(build_sequences(extract_units(stream, speech_tokenizer), seed=3), tokenizer)
        assert isinstance(streamed, datasets.IterableDataset)
        assert list(streamed) == expected.to_list()
    with pytest.raises(ValueError, match=r"dataset has no column\(s\) \['units'\] \(columns: \['audio', 'words'\]\)"):
        build_sequences(schemaless, kinds=("speech",))
