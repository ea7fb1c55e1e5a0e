import re
import threading
import time

import numpy as np
import pytest
import soundfile
import torch
from transformers import LogitsProcessor, LogitsProcessorList, pipeline

from transformers_spiritlm import SpiritLMModalityLogitsProcessor, SpiritLMStreamer, string_to_units, units_to_string
from transformers_spiritlm.streaming import SpiritLMAudioChunk, SpiritLMChunkedDecoder
from transformers_spiritlm.testing import build_tiny_repo


UNIT_TOKEN = re.compile(r"\[(?:Hu|Pi|St)\d+\]")
# A speech prompt given as units: the generation continues it (arbitrary modality, speech-only logits).
PROMPT_UNITS = units_to_string(
    {"hubert": [5, 9, 14, 9, 300, 301, 7, 7, 42, 8, 17, 250], "pitch": [3, 3, 12, 40, 41, 9], "style": [71]}
)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    return {
        # The demo tokenizes its spoken prompt: only the expressive repo has a speech tokenizer.
        variant: build_tiny_repo(root / variant, variant=variant, speech_tokenizer=variant == "expressive")
        for variant in ("base", "expressive")
    }


@pytest.fixture(scope="module")
def pipes(repos):
    return {variant: pipeline("spirit-lm", model=str(path)) for variant, path in repos.items()}


def segments_of(chunks: list[dict]) -> list[dict]:
    """Chunks joined into segments: consecutive chunks of one type form one segment, except a speech chunk without
    audio, which is a whole (too short) segment."""
    segments = []
    for chunk in chunks:
        last = segments[-1] if segments else None
        same_segment = last is not None and last["type"] == chunk["type"]
        if chunk["type"] == "speech" and same_segment:
            same_segment = "audio" in chunk and "audio" in last
        if not same_segment:
            segments.append(dict(chunk))
        elif chunk["type"] == "text":
            last["text"] += chunk["text"]
        else:
            last["units"] += chunk["units"]
            last["audio"] = np.concatenate([last["audio"], chunk["audio"]])
    return segments


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = np.sum((reference - estimate).astype(np.float64) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / noise)


def unit_tokens(units: dict) -> list[str]:
    return UNIT_TOKEN.findall(units_to_string(units))


@pytest.mark.parametrize(
    "chunking", [{}, {"chunk_size": 1, "first_chunk_size": 1}, {"chunk_size": 7, "first_chunk_size": None}]
)
def test_chunked_decoder_equals_decode_string_base(pipes, chunking):
    vocoder = pipes["base"].vocoder
    generator = torch.Generator().manual_seed(0)
    tokens = unit_tokens({"hubert": torch.randint(0, 501, (90,), generator=generator).tolist()})
    offline = vocoder.decode_string("".join(tokens), speaker_id=1)
    decoder = vocoder.chunked_decoder(speaker_id=1, **chunking)
    chunks = [chunk for token in tokens for chunk in decoder.push(token)]
    streamed_before_flush = len(chunks)
    chunks += decoder.flush()
    assert streamed_before_flush >= 2  # audio came out while units were still arriving
    assert "".join(chunk.units for chunk in chunks) == "".join(tokens)
    torch.testing.assert_close(torch.cat([chunk.waveform for chunk in chunks]), offline, rtol=0, atol=1e-4)


def test_chunk_boundaries_do_not_depend_on_how_units_are_pushed(pipes):
    """A streamer pushes whatever ids arrived since its last look, so the same units come in pieces of any size: the
    chunks (their units and samples) must be the same, as a page showing them or a test comparing two runs expects."""
    vocoder = pipes["expressive"].vocoder
    generator = torch.Generator().manual_seed(2)
    units = {
        "hubert": torch.randint(0, 501, (70,), generator=generator).tolist(),
        "pitch": torch.randint(0, 64, (35,), generator=generator).tolist(),
        "style": torch.randint(0, 100, (3,), generator=generator).tolist(),
    }
    tokens = unit_tokens(units)

    def chunked(piece_sizes):
        decoder = vocoder.chunked_decoder(chunk_size=20, first_chunk_size=5)
        chunks, start = [], 0
        for size in piece_sizes:
            chunks += decoder.push("".join(tokens[start : start + size]))
            start += size
        return chunks + decoder.flush()

    one_by_one = chunked([1] * len(tokens))
    hubert_counts = [chunk.units.count("[Hu") for chunk in one_by_one]
    assert hubert_counts == [5, 20, 20, 20, 5]
    sizes = torch.Generator().manual_seed(3)
    for pieces in ([len(tokens)], [60, len(tokens)], torch.randint(1, 30, (len(tokens),), generator=sizes).tolist()):
        chunks = chunked(pieces)
        assert [chunk.units for chunk in chunks] == [chunk.units for chunk in one_by_one]
        for chunk, reference in zip(chunks, one_by_one):
            torch.testing.assert_close(chunk.waveform, reference.waveform, rtol=0, atol=1e-5)


def test_chunked_decoder_expressive_snr(pipes):
    vocoder = pipes["expressive"].vocoder
    generator = torch.Generator().manual_seed(1)
    units = {
        "hubert": torch.randint(0, 501, (80,), generator=generator).tolist(),
        "pitch": torch.randint(0, 64, (40,), generator=generator).tolist(),
        "style": torch.randint(0, 100, (4,), generator=generator).tolist(),
    }
    # Hubert units before the first pitch and style units take them: the decoder has to wait for them.
    tokens = unit_tokens(units)
    tokens = [token for token in tokens if token.startswith("[Hu")][:3] + tokens
    offline = vocoder.decode_string("".join(tokens)).numpy()
    decoder = vocoder.chunked_decoder()
    chunks = [chunk for token in tokens for chunk in decoder.push(token)] + decoder.flush()
    streamed = torch.cat([chunk.waveform for chunk in chunks]).numpy()
    assert streamed.shape == offline.shape
    snr = snr_db(offline, streamed)
    print(
        f"EXPRESSIVE chunked vs offline vocoding: SNR {snr:.1f} dB, max abs diff {np.abs(streamed - offline).max():.2e}"
    )
    assert snr >= 30
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-4)


def test_chunked_decoder_reads_unit_strings_as_decode_string(pipes):
    base, expressive = pipes["base"].vocoder, pipes["expressive"].vocoder
    # A BASE vocoder skips pitch and style units, whatever they hold.
    string = "[Pi1x][St][Hu5][Hu7][Hu7][Hu300]"
    decoder = base.chunked_decoder(first_chunk_size=1, chunk_size=1)
    chunks = decoder.push(string) + decoder.flush()
    torch.testing.assert_close(torch.cat([chunk.waveform for chunk in chunks]), base.decode_string(string))
    # Text right after a unit makes it malformed ("5]"), as decode_string reads it, however the text is pushed.
    with pytest.raises(ValueError, match=r"malformed hubert unit in the unit string .*'5\]'"):
        base.decode_string("[Hu5]x[Hu6]")
    decoder = base.chunked_decoder()
    decoder.push("[Hu5]")
    with pytest.raises(ValueError, match=r"malformed hubert unit in the unit string .*'5\]'"):
        decoder.push("x[Hu6]")
    # An unclosed unit that runs into the next one has no value left once its last character is dropped.
    with pytest.raises(ValueError, match=r"malformed hubert unit in the unit string \(''\)"):
        base.chunked_decoder().push("[Hu1[Hu2]")
    with pytest.raises(ValueError, match=r"malformed style unit in the unit string .*'3x'"):
        expressive.chunked_decoder().push("[St3x][Pi1][Hu2]")


def test_too_little_context_is_not_exact(pipes):
    """The default context is needed: a chunk synthesised with less differs from the whole waveform."""
    vocoder = pipes["base"].vocoder
    tokens = unit_tokens({"hubert": list(range(100, 160))})
    offline = vocoder.decode_string("".join(tokens))
    left, right = vocoder.receptive_field()
    decoder = vocoder.chunked_decoder(chunk_size=5, left_context=left // 2, lookahead=right // 2)
    chunks = [chunk for token in tokens for chunk in decoder.push(token)] + decoder.flush()
    assert (torch.cat([chunk.waveform for chunk in chunks]) - offline).abs().max() > 1e-3


def test_chunked_decoder_lives_in_streaming_and_its_old_import_warns(pipes):
    vocoder = pipes["base"].vocoder
    tokens = unit_tokens({"hubert": list(range(100, 130))})
    decoder = SpiritLMChunkedDecoder(vocoder, speaker_id=1, chunk_size=10)
    chunks = [chunk for token in tokens for chunk in decoder.push(token)] + decoder.flush()
    assert all(isinstance(chunk, SpiritLMAudioChunk) for chunk in chunks) and len(chunks) == 4
    torch.testing.assert_close(
        torch.cat([chunk.waveform for chunk in chunks]), vocoder.decode_string("".join(tokens), speaker_id=1)
    )
    assert type(vocoder.chunked_decoder(chunk_size=10)) is SpiritLMChunkedDecoder
    with pytest.warns(FutureWarning, match="vocoder.SpiritLMChunkedDecoder moved to transformers_spiritlm.streaming"):
        from transformers_spiritlm.vocoder import SpiritLMChunkedDecoder as old_location
    assert old_location is SpiritLMChunkedDecoder


@pytest.mark.parametrize("variant", ["base", "expressive"])
def test_stream_speech_equals_offline(pipes, variant):
    pipe = pipes[variant]
    kwargs = {"output_modality": "speech", "max_new_tokens": 80, "do_sample": True, "seed": 3}
    (offline,) = pipe("Hello, this is", **kwargs)
    chunks = list(pipe.stream("Hello, this is", chunk_size=10, **kwargs))
    assert len(chunks) >= 3 and all(chunk["type"] == "speech" for chunk in chunks)
    assert all(chunk["audio"].dtype == np.float32 and chunk["sampling_rate"] == 16000 for chunk in chunks)
    (streamed,) = segments_of(chunks)
    assert streamed["units"] == offline["units"]
    assert streamed["audio"].shape == offline["audio"].shape
    print(f"{variant} streamed vs offline speech: SNR {snr_db(offline['audio'], streamed['audio']):.1f} dB")
    np.testing.assert_allclose(streamed["audio"], offline["audio"], rtol=0, atol=1e-4)


def test_stream_text_deltas_join_into_offline_text(pipes):
    pipe = pipes["expressive"]
    kwargs = {"output_modality": "text", "max_new_tokens": 40, "do_sample": True, "seed": 0}
    (offline,) = pipe("one two three", **kwargs)
    chunks = list(pipe.stream("one two three", **kwargs))
    assert len(chunks) > 5 and all(chunk["type"] == "text" and chunk["text"] for chunk in chunks)
    assert "".join(chunk["text"] for chunk in chunks) == offline["text"]


@pytest.mark.parametrize("seed", [0, 5])
def test_stream_arbitrary_equals_offline_segments(pipes, seed):
    """Mixed output: text deltas, speech chunks, and too-short speech sent as units only (dropped offline)."""
    pipe = pipes["base"]
    kwargs = {"output_modality": "arbitrary", "max_new_tokens": 80, "do_sample": True, "seed": seed}
    offline = pipe("Hello", **kwargs)
    streamed = segments_of(list(pipe.stream("Hello", **kwargs)))
    kept = [segment for segment in streamed if segment["type"] == "text" or "audio" in segment]
    assert [segment["type"] for segment in kept] == [segment["type"] for segment in offline]
    assert any("audio" not in segment for segment in streamed if segment["type"] == "speech")
    for ours, theirs in zip(kept, offline):
        if ours["type"] == "text":
            assert ours["text"] == theirs["text"]
        else:
            assert ours["units"] == theirs["units"]
            np.testing.assert_allclose(ours["audio"], theirs["audio"], rtol=0, atol=1e-4)


def test_a_slow_consumer_gets_the_same_items(pipes):
    """Ids pile up in the queue while the consumer is busy (playing audio, a loaded machine): the items must not
    depend on that, or two runs of the same seeded answer (a page and its test) differ."""
    pipe = pipes["expressive"]
    kwargs = {"output_modality": "arbitrary", "max_new_tokens": 60, "do_sample": True, "seed": 4}

    def items(delay: float) -> list[tuple]:
        received = []
        for chunk in pipe.stream("Hello, this is", chunk_size=10, **kwargs):
            received.append((chunk["type"], chunk.get("text"), chunk.get("units"), len(chunk.get("audio", ()))))
            time.sleep(delay)
        return received

    fast, slow = items(0.0), items(0.2)
    assert len(fast) >= 4 and {kind for kind, *_ in fast} == {"text", "speech"}
    assert slow == fast


def test_streamer_with_generate_in_a_thread_matches_parse(pipes):
    """The documented pattern: generate in a thread, iterate; chunk types follow `parse` of the whole output."""
    pipe = pipes["base"]
    processor, model = pipe.processor, pipe.model
    inputs = processor([{"type": "text", "text": "Good morning"}], output_modality="arbitrary")
    streamer = SpiritLMStreamer(processor, pipe.vocoder, output_modality="arbitrary", timeout=60)
    torch.manual_seed(11)
    result = {}

    def generate():
        result["sequences"] = model.generate(
            **inputs, streamer=streamer, max_new_tokens=80, do_sample=True, pad_token_id=0
        )

    thread = threading.Thread(target=generate)
    thread.start()
    chunks = list(streamer)
    thread.join()
    prompt_length = inputs["input_ids"].shape[1]
    whole = processor.decode_text(result["sequences"][0])
    prompt = processor.decode_text(result["sequences"][0, :prompt_length])
    parsed = processor.parse(whole[len(prompt) :].strip())
    assert [segment["type"] for segment in segments_of(chunks)] == [segment["type"] for segment in parsed]
    for ours, theirs in zip(segments_of(chunks), parsed):
        assert ours.get("text", ours.get("units")) == theirs.get("text", theirs.get("units"))


def test_stream_continuing_a_speech_prompt(pipes):
    """A prompt ending in speech that the generation continues: the prompt units condition the audio, which starts
    exactly where the generated units start."""
    pipe = pipes["expressive"]
    speech_only = SpiritLMModalityLogitsProcessor(pipe.model.config, "speech")
    prompt = [{"type": "speech", "units": PROMPT_UNITS}]
    kwargs = {"output_modality": "arbitrary", "max_new_tokens": 60, "do_sample": True, "seed": 2}
    (offline,) = pipe(prompt, logits_processor=LogitsProcessorList([speech_only]), **kwargs)
    chunks = list(pipe.stream(prompt, logits_processor=LogitsProcessorList([speech_only]), **kwargs))
    (streamed,) = segments_of(chunks)
    assert streamed["units"] == offline["units"] and not streamed["units"].startswith(PROMPT_UNITS)
    whole = pipe.vocoder.decode_string(PROMPT_UNITS + streamed["units"]).numpy()
    hubert = [int(unit) for unit in string_to_units(PROMPT_UNITS + streamed["units"])["hubert"].split()]
    with torch.no_grad():
        durations = pipe.vocoder.duration_predictor.durations(pipe.vocoder.hubert_embedding(torch.tensor(hubert)))
    context_frames = int(durations[: PROMPT_UNITS.count("[Hu")].sum())
    np.testing.assert_allclose(streamed["audio"], whole[context_frames * 640 :], rtol=0, atol=1e-4)
    # Offline cuts the prompt's share in proportion of hubert units: the same audio up to a few frames at the cut.
    assert abs(len(offline["audio"]) - len(streamed["audio"])) <= 4 * 640


class _FailAt(LogitsProcessor):
    def __init__(self, step: int):
        self.step, self.calls = step, 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls == self.step:
            raise RuntimeError("generation failed at step 30")
        return scores


def stream_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "spiritlm-stream"]


def test_exception_in_generation_reaches_the_consumer(pipes):
    pipe = pipes["base"]
    chunks = pipe.stream("Hello", output_modality="speech", max_new_tokens=60, logits_processor=[_FailAt(30)])
    received = []
    with pytest.raises(RuntimeError, match="generation failed at step 30"):
        for chunk in chunks:
            received.append(chunk)
    assert received  # chunks of the first 29 tokens came before the error
    assert not stream_threads()


def test_early_stop_ends_the_generation_thread(pipes):
    pipe = pipes["base"]
    steps = _FailAt(10_000)  # counts steps only
    chunks = pipe.stream("Hello", output_modality="speech", max_new_tokens=2000, logits_processor=[steps])
    first = next(chunks)
    assert first["type"] == "speech" and stream_threads()
    chunks.close()
    assert not stream_threads()
    assert steps.calls < 200  # stopped long before max_new_tokens


def test_static_cache_with_modality_processor_gives_dynamic_cache_ids(pipes):
    pipe = pipes["expressive"]
    inputs = pipe.processor([{"type": "text", "text": "Hello, this is"}], output_modality="speech")
    processors = LogitsProcessorList([SpiritLMModalityLogitsProcessor(pipe.model.config, "speech")])
    kwargs = {"max_new_tokens": 24, "do_sample": False, "logits_processor": processors, "pad_token_id": 0}
    dynamic = pipe.model.generate(**inputs, **kwargs)
    static = pipe.model.generate(**inputs, cache_implementation="static", **kwargs)
    assert dynamic.shape[1] == inputs["input_ids"].shape[1] + 24
    assert static.tolist() == dynamic.tolist()
    streamer = SpiritLMStreamer(pipe.processor, pipe.vocoder, output_modality="speech", timeout=60)
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            ids=pipe.model.generate(**inputs, cache_implementation="static", streamer=streamer, **kwargs)
        )
    )
    thread.start()
    (streamed,) = segments_of(list(streamer))
    thread.join()
    assert result["ids"].tolist() == dynamic.tolist()
    assert streamed["units"] == pipe.processor.tokenizer.decode(dynamic[0, inputs["input_ids"].shape[1] :])


def test_pipeline_passes_a_streamer_to_generate(pipes):
    pipe = pipes["expressive"]
    kwargs = {"output_modality": "speech", "max_new_tokens": 50, "do_sample": True, "seed": 4}
    streamer = SpiritLMStreamer(pipe.processor, pipe.vocoder, output_modality="speech", timeout=60)
    result = {}
    thread = threading.Thread(target=lambda: result.update(segments=pipe("Hello", streamer=streamer, **kwargs)))
    thread.start()
    chunks = list(streamer)
    thread.join()
    ((offline,), (streamed,)) = result["segments"], segments_of(chunks)
    assert len(chunks) >= 2 and streamed["units"] == offline["units"]
    np.testing.assert_allclose(streamed["audio"], offline["audio"], rtol=0, atol=1e-4)


def test_bad_inputs_name_the_fix(pipes):
    pipe = pipes["base"]
    with pytest.raises(ValueError, match=r"streams one prompt, got a batch of 2: call it once per prompt"):
        pipe.stream(["Hello", "Good morning"], output_modality="speech")
    streamer = SpiritLMStreamer(pipe.processor, pipe.vocoder, output_modality="speech")
    with pytest.raises(ValueError, match=r"batch of 2 prompts: call the pipeline once per prompt"):
        pipe(["Hello", "Good morning"], output_modality="speech", streamer=streamer)
    inputs = pipe.processor([[{"type": "text", "text": "Hi"}], [{"type": "text", "text": "Hello"}]])
    with pytest.raises(ValueError, match=r"one sequence \(batch size 1\), got a batch of 2: generate one prompt at"):
        pipe.model.generate(**inputs, streamer=streamer, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"needs a vocoder: pass vocoder=SpiritLMVocoder.from_pretrained"):
        SpiritLMStreamer(pipe.processor, None, output_modality="speech")
    SpiritLMStreamer(pipe.processor, None, output_modality="text")  # text needs no vocoder
    with pytest.raises(ValueError, match=r"chunk_size must be a whole number of hubert units >= 1, got 0"):
        pipe.stream("Hello", output_modality="speech", chunk_size=0)
    with pytest.raises(ValueError, match=r"first_chunk_size must be a whole number of hubert units >= 1, got -1"):
        SpiritLMStreamer(pipe.processor, pipe.vocoder, first_chunk_size=-1)
    with pytest.raises(ValueError, match=r"lookahead must be a number of frames >= 0"):
        pipe.vocoder.chunked_decoder(lookahead=-2)
    with pytest.raises(ValueError, match=r"make the streamer with output_modality='text'"):
        pipe("Hello", output_modality="text", streamer=SpiritLMStreamer(pipe.processor, pipe.vocoder))
    with pytest.raises(ValueError, match=r"unknown speaker_id 9"):
        pipe.stream("Hello", output_modality="speech", speaker_id=9)
    assert not stream_threads()


def test_cli_generate_stream_writes_a_wav_valid_at_every_chunk(pipes, repos, tmp_path, monkeypatch, capsys):
    from transformers_spiritlm.cli import generate as generate_command
    from transformers_spiritlm.cli import main

    output = tmp_path / "answer.wav"
    sizes = []
    write = generate_command.ProgressiveWav.write

    def checked_write(self, audio):
        write(self, audio)
        sizes.append(soundfile.info(self.path).frames)  # readable after each chunk, with every sample so far
        assert sizes[-1] == self.num_bytes // 2

    monkeypatch.setattr(generate_command.ProgressiveWav, "write", checked_write)
    monkeypatch.setattr(generate_command, "load_pipeline", lambda repo, device, gguf=None: pipes["base"])
    args = ["generate", "--repo", str(repos["base"]), "--text", "Hello, this is", "--output-modality", "speech"]
    args += ["--max-new-tokens", "80", "--seed", "3", "--stream", "-o", str(output)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"speech: -> {output}" in printed and re.search(r"time to first audio: \d+\.\d\d s", printed)
    assert len(sizes) >= 2 and sizes == sorted(sizes)
    (offline,) = pipes["base"]("Hello, this is", output_modality="speech", max_new_tokens=80, do_sample=True, seed=3)
    audio, rate = soundfile.read(output, dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(audio, offline["audio"], rtol=0, atol=1 / 2**15 + 1e-6)  # 16-bit WAV
    assert main(args) == 2  # an existing output is kept
    assert "answer.wav exists; choose another --output or pass --force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_cli_generate_stream_prints_text_deltas(pipes, repos, tmp_path, monkeypatch, capsys):
    from transformers_spiritlm.cli import generate as generate_command
    from transformers_spiritlm.cli import main

    deltas = []
    stream = pipes["base"].stream
    monkeypatch.setattr(generate_command, "load_pipeline", lambda repo, device, gguf=None: pipes["base"])
    monkeypatch.setattr(pipes["base"], "stream", lambda *a, **k: (deltas.append(c) or c for c in stream(*a, **k)))
    args = ["generate", "--repo", str(repos["base"]), "--text", "one two", "--output-modality", "text"]
    args += ["--max-new-tokens", "20", "--seed", "0", "--stream", "-o", str(tmp_path / "unused.wav")]
    assert main(args) == 0
    (offline,) = pipes["base"]("one two", output_modality="text", max_new_tokens=20, do_sample=True, seed=0)
    assert len(deltas) > 3
    assert capsys.readouterr().out == f"text:   {offline['text']}\n"
    assert not (tmp_path / "unused.wav").exists()


def test_cli_demo_stream(repos, tmp_path, capsys):
    from transformers_spiritlm.cli import main

    output = tmp_path / "demo.wav"
    args = ["demo", "--stream", "--repo", str(repos["expressive"]), "--max-new-tokens", "40", "-o", str(output)]
    assert main(args + ["--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "streamed: audio is written while generating" in printed and "time to first audio:" in printed
    assert soundfile.info(output).frames > 0
