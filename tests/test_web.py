"""The web page: `spiritlm serve` on the tiny demo model, driven by headless Chromium (Selenium) and `gradio_client`.

One server per module. Needs the `[web]` extra; the browser test also needs Debian's `chromium`, `chromium-driver`
and `ffmpeg` (`.ci/run` installs them). Set SPIRITLM_WEB_SCREENSHOT=path.png to save the README screenshot.
"""

import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

from transformers_spiritlm.cli import DEMO_PROMPT_WAV


UNITS = re.compile(r"^(\[(Hu|Pi|St)\d+\])+$")
MAX_UPLOAD_MB = 1
MAX_AUDIO_SECONDS = 10
MAX_TEXT_CHARS = 300
ANSWER_TIMEOUT = 120
PROMPT_ORDER = "speech, then text"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(arguments: list[str], log_path: Path, extra_env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Starts `spiritlm serve ARGUMENTS` on a free port, logging to `log_path`, and waits until it answers:
    `(process, url)`."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    env.update(extra_env or {})
    command = [sys.executable, "-m", "transformers_spiritlm.cli", "serve", "--port", str(port), "--device", "cpu"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command + arguments, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"spiritlm serve exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"spiritlm serve did not answer at {url} within 180 s:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        # Bound to this machine only by default.
        assert f"Running on local URL:  http://127.0.0.1:{port}" in log_path.read_text()
    except BaseException:
        _stop(process)
        raise
    return process, url


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`spiritlm serve` on a free port with the tiny demo model (built in a fresh cache): `(url, cache_dir)`; its
    log is `cache_dir / "serve.log"`."""
    pytest.importorskip("gradio", reason="the web page needs the [web] extra (gradio)")
    cache_dir = tmp_path_factory.mktemp("web-cache")
    arguments = ["--cache-dir", str(cache_dir), "--max-upload-mb", str(MAX_UPLOAD_MB)]
    arguments += ["--max-audio-seconds", str(MAX_AUDIO_SECONDS), "--max-text-chars", str(MAX_TEXT_CHARS)]
    process, url = _serve(arguments, cache_dir / "serve.log")
    try:
        yield url, cache_dir
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def client(server):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(server[0], download_files=False, verbose=False)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    not_audio = folder / "notes.wav"
    not_audio.write_text("these are meeting notes, not a recording\n" * 20)
    short = folder / "short.wav"
    soundfile.write(short, np.zeros(800, np.float32), 16000)  # 50 ms of silence
    oversize = folder / "long.wav"
    soundfile.write(oversize, np.zeros(40 * 16000, np.float32), 16000, subtype="PCM_16")  # 1.2 MB
    over_length = folder / "twelve.wav"
    soundfile.write(over_length, np.zeros(12 * 8000, np.float32), 8000, subtype="PCM_16")  # 12 s in 188 KB
    return {"not_audio": not_audio, "short": short, "oversize": oversize, "over_length": over_length}


def _ask(client, audio=None, text="", output_modality="speech", seed=0, max_new_tokens=30):
    from gradio_client import handle_file

    audio = handle_file(str(audio)) if audio is not None else None
    return client.predict(
        audio, text, PROMPT_ORDER, output_modality, 2, 0.8, 0.95, max_new_tokens, seed, True, api_name="/answer"
    )


def test_core_imports_and_serve_without_gradio():
    """Without the [web] extra the package and its CLI import, and `serve` names the extra to install."""
    code = (
        "import sys, transformers_spiritlm, transformers_spiritlm.cli\n"
        "print('gradio' in sys.modules)\n"
        "sys.modules['gradio'] = None  # as if not installed\n"
        "sys.exit(transformers_spiritlm.cli.main(['serve']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stdout.strip() == "False"
    assert result.stderr.strip().splitlines()[-1] == (
        "spiritlm serve: error: the web page needs the [web] extra: pip install 'transformers-spiritlm[web]' "
        "(from a clone: pip install -e '.[web]')"
    )


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (["--concurrency", "0"], "spiritlm serve: error: --concurrency must be at least 1, got 0"),
        (["--max-upload-mb", "0"], "spiritlm serve: error: --max-upload-mb must be positive, got 0.0"),
        (["--max-audio-seconds", "-1"], "spiritlm serve: error: --max-audio-seconds must be positive, got -1.0"),
        (["--max-text-chars", "0"], "spiritlm serve: error: --max-text-chars must be at least 1, got 0"),
    ],
)
def test_serve_rejects_bad_settings(argument, message, capsys):
    from transformers_spiritlm.cli import main

    assert main(["serve", *argument]) == 2
    assert capsys.readouterr().err.strip() == message


def test_bad_inputs_give_messages_and_the_next_request_works(client, bad_files):
    from gradio_client.exceptions import AppError

    expected = {
        None: "Nothing to answer: record or upload a spoken question, type a written one, or both.",
        "not_audio": "Could not read notes.wav as audio: upload a WAV, FLAC, OGG or MP3 file.",
        "short": "The audio short.wav lasts 50 ms; speak for at least 80 ms.",
    }
    for name, message in expected.items():
        with pytest.raises(AppError) as error:
            _ask(client, bad_files[name] if name else None)
        assert str(error.value) == message
    # The client refuses uploads over the server's limit before sending them (the browser test sees the page's
    # message).
    with pytest.raises(ValueError, match=r"exceeds the maximum file size of 1048576 bytes"):
        _ask(client, bad_files["oversize"])
    transcript, _, units, wav = _ask(client, DEMO_PROMPT_WAV)
    assert re.fullmatch(r"\[speech \d+\.\d\d s\]", transcript)
    assert UNITS.match(units)
    assert wav["path"].endswith(".wav")


def test_the_servers_length_limits_refuse_long_questions(client, bad_files):
    """`--max-audio-seconds` and `--max-text-chars` reach the page: over them, a message and no model work."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as error:
        _ask(client, bad_files["over_length"])
    assert (
        str(error.value) == "The audio twelve.wav lasts 12.0 s; this server takes at most 10 s. Upload a shorter clip."
    )
    with pytest.raises(AppError) as error:
        _ask(client, text="x" * (MAX_TEXT_CHARS + 1))
    assert str(error.value) == "The written question has 301 characters; this server takes at most 300. Shorten it."
    transcript, _, _, _ = _ask(client, text="x" * MAX_TEXT_CHARS, output_modality="text", max_new_tokens=2)
    assert transcript


def test_a_bad_request_is_one_line_in_the_server_log(client, server, bad_files):
    from gradio_client.exceptions import AppError

    log = server[1] / "serve.log"
    start = log.stat().st_size
    for audio, text in [(bad_files["not_audio"], ""), (None, "x" * (MAX_TEXT_CHARS + 1))]:
        with pytest.raises(AppError):
            _ask(client, audio, text=text)
    assert log.read_bytes()[start:].decode().splitlines() == [
        "refused a request: Could not read notes.wav as audio: upload a WAV, FLAC, OGG or MP3 file.",
        "refused a request: The written question has 301 characters; this server takes at most 300. Shorten it.",
    ]


@pytest.fixture(scope="module")
def pipe(server):
    """The server's model, loaded in the test process."""
    from transformers import pipeline

    (repo,) = server[1].glob("demo-tiny-expressive-*")
    return pipeline("spirit-lm", model=str(repo), device="cpu")


def test_answer_is_the_librarys_streamed_in_pieces(client, pipe):
    from gradio_client import handle_file

    job = client.submit(
        handle_file(str(DEMO_PROMPT_WAV)), "", PROMPT_ORDER, "speech", 2, 0.8, 0.95, 30, 0, True, api_name="/answer"
    )
    transcript, stream, units, wav = job.result(timeout=ANSWER_TIMEOUT)
    settings = dict(output_modality="speech", speaker_id=2, max_new_tokens=30, do_sample=True, temperature=0.8)
    settings.update(top_p=0.95, seed=0)
    (expected,) = pipe(DEMO_PROMPT_WAV, **settings)
    assert units == expected["units"]
    # The page shows each chunk as the library streams it: first a cleared answer, then growing speech.
    seconds = np.cumsum([len(chunk["audio"]) for chunk in pipe.stream(DEMO_PROMPT_WAV, **settings)]) / 16000
    assert len(seconds) >= 2
    shown = [f"[speech {second:.2f} s]" for second in seconds]
    assert [output[0] for output in job.outputs()] == ["", *shown, shown[-1]]
    with urllib.request.urlopen(wav["url"], timeout=10) as response:
        audio, rate = soundfile.read(io.BytesIO(response.read()))
    assert rate == 16000 and len(audio) == len(expected["audio"]) and transcript == shown[-1]
    # The streamed audio: an HLS playlist of AAC segments (AAC pads a few ms).
    with urllib.request.urlopen(stream["url"], timeout=10) as response:
        playlist = response.read().decode()
    durations = [float(line[8:].rstrip(",")) for line in playlist.splitlines() if line.startswith("#EXTINF:")]
    assert sum(durations) == pytest.approx(len(audio) / rate, abs=0.15), playlist


def test_the_app_refuses_uploads_over_its_own_limit(pipe, bad_files):
    """`build_app(max_upload_mb=...)` has its own check, for a Space launched without `max_file_size`."""
    gradio = pytest.importorskip("gradio")
    from transformers_spiritlm.web import PROMPT_ORDERS, prompt_segments

    with pytest.raises(gradio.Error) as error:
        prompt_segments(pipe, str(bad_files["oversize"]), "", PROMPT_ORDERS[0], max_upload_bytes=2**20)
    assert (
        error.value.message == "The audio long.wav is 1.2 MB; this server takes at most 1 MB. Upload a shorter clip."
    )
    segments = prompt_segments(pipe, str(DEMO_PROMPT_WAV), "Answer:", PROMPT_ORDERS[1], max_upload_bytes=2**20)
    assert [segment["type"] for segment in segments] == ["text", "speech"]
    assert segments[1]["sampling_rate"] == 16000 and segments[1]["audio"].shape[0] == 1


@pytest.fixture(scope="module")
def local_pipe(tiny_repo):
    """A pipeline on the session's tiny EXPRESSIVE repo, for the tests that call the page's code without a server."""
    pytest.importorskip("gradio", reason="the web page needs the [web] extra (gradio)")
    from transformers import pipeline

    return pipeline("spirit-lm", model=str(tiny_repo), device="cpu")


def _handler(app):
    """The function behind the page's Answer button."""
    (handler,) = [function.fn for function in app.fns.values() if function.api_name == "answer"]
    return handler


def _answer(handler, audio=None, text="", output_modality="speech", max_new_tokens=30):
    """The page's outputs as it streams them, from its handler."""
    audio = None if audio is None else str(audio)
    return handler(audio, text, PROMPT_ORDER, output_modality, 2, 0.8, 0.95, max_new_tokens, 0, True)


def test_the_page_refuses_long_audio_and_impossible_rates_from_the_header(local_pipe, tmp_path, monkeypatch):
    """Checked before decoding: the 180 KB FLAC holds an hour of silence (230 MB decoded, minutes of tokenizing)."""
    gradio = pytest.importorskip("gradio")
    from transformers_spiritlm import web

    hour = tmp_path / "hour.flac"
    with soundfile.SoundFile(hour, "w", 16000, 1, subtype="PCM_16") as file:
        for _ in range(60):
            file.write(np.zeros(60 * 16000, np.int16))
    one_hz = tmp_path / "one-hz.wav"
    soundfile.write(one_hz, np.zeros(32000, np.int16), 1, subtype="PCM_16")  # 64 KB, "9 hours" once resampled
    monkeypatch.setattr(web, "read_audio_file", lambda path: pytest.fail(f"{path} was decoded"))
    expected = {
        hour: "The audio hour.flac lasts 3600.0 s; this server takes at most 60 s. Upload a shorter clip.",
        one_hz: "The audio one-hz.wav has a sampling rate of 1 Hz, outside the 4000 to 384000 Hz of recorded audio; "
        "give its true rate (is the header corrupt?) or resample it into that range first",
    }
    for path, message in expected.items():
        with pytest.raises(gradio.Error) as error:
            web.prompt_segments(local_pipe, str(path), "", PROMPT_ORDER, max_upload_bytes=2**20, max_audio_seconds=60)
        assert error.value.message == message
    with pytest.raises(gradio.Error) as error:
        web.prompt_segments(local_pipe, None, "x" * 10_001, PROMPT_ORDER, max_upload_bytes=2**20)
    assert error.value.message == (
        "The written question has 10001 characters; this server takes at most 10000. Shorten it."
    )


def test_the_page_shows_a_prompt_past_the_models_context(local_pipe, caplog):
    """The library's error, shown in the page and logged in one line (gradio prints no traceback for it)."""
    gradio = pytest.importorskip("gradio")
    from transformers_spiritlm.web import build_app

    # 6,599 characters once stripped, under the page's 10,000, but 4,402 tokens.
    outputs = _answer(_handler(build_app(local_pipe)), text="hello " * 1100, output_modality="text")
    assert next(outputs) == ("", None, "", None)
    with caplog.at_level(logging.WARNING, logger="transformers_spiritlm.web"), pytest.raises(gradio.Error) as error:
        next(outputs)
    message = (
        "Could not answer: the prompt has 4402 tokens and max_new_tokens is 30: 4432 positions, more than the 4096 "
        "the model was trained on (max_position_embeddings); shorten the prompt (less audio or text)"
    )
    assert error.value.message == message and not error.value.print_exception
    assert caplog.messages == [f"refused a request: {message}"]


def test_an_answer_closed_right_after_its_last_chunk_leaves_no_file(local_pipe):
    """What gradio does when the client disconnects after the last chunk: it closes the handler's generator."""
    pytest.importorskip("gradio")
    from transformers_spiritlm.web import build_app

    outputs = _answer(_handler(build_app(local_pipe)), DEMO_PROMPT_WAV)
    wav = next(Path(output[3]) for output in outputs if output[3] is not None)
    assert soundfile.info(wav).samplerate == 16000 and wav.name.startswith("answer-")
    outputs.close()
    assert not wav.exists() and not any(wav.parent.iterdir())


def test_stopping_the_server_removes_its_answer_files(tiny_repo, tmp_path):
    """SIGTERM (how services are stopped) closes the server like Ctrl-C: nothing of the answers stays in its temp
    folder, neither the page's own folder nor gradio's copies."""
    gradio_client = pytest.importorskip("gradio_client")
    temp = tmp_path / "tmp"
    temp.mkdir()
    process, url = _serve(["--repo", str(tiny_repo)], tmp_path / "serve.log", {"TMPDIR": str(temp)})
    try:
        _ask(gradio_client.Client(url, download_files=False, verbose=False), DEMO_PROMPT_WAV)
        assert list(temp.glob("spiritlm-web-*")) and list(temp.rglob("answer-*.wav"))  # gradio's copy
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
    finally:
        _stop(process)
    assert not list(temp.glob("spiritlm-web-*")) and not list(temp.rglob("answer-*.wav"))


def test_without_ffmpeg_the_spoken_answer_is_the_full_wav(local_pipe, tmp_path, monkeypatch, caplog):
    """The page still answers in speech: the player gets the whole WAV at the end instead of a stream, with one note
    in the log when the app is built."""
    gradio_client = pytest.importorskip("gradio_client")
    from transformers_spiritlm.web import build_app

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ffmpeg for the app, nor for gradio
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with caplog.at_level(logging.WARNING, logger="transformers_spiritlm.web"):
        app = build_app(local_pipe)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", download_files=False, verbose=False)
        transcript, audio, units, wav = _ask(client, DEMO_PROMPT_WAV)
        with urllib.request.urlopen(audio["url"], timeout=10) as response:
            played = response.read()
        with urllib.request.urlopen(wav["url"], timeout=10) as response:
            downloaded = response.read()
    finally:
        app.close()
    assert [record.getMessage() for record in caplog.records if record.name.startswith("transformers_spiritlm")] == [
        "the ffmpeg executable is not installed: the page plays each spoken answer once it is complete instead of "
        "streaming it. Install ffmpeg to stream, e.g. apt-get install ffmpeg"
    ]
    assert UNITS.match(units) and audio["path"].endswith(".wav") and not audio.get("is_stream")
    assert played == downloaded
    samples, rate = soundfile.read(io.BytesIO(played))
    assert transcript == f"[speech {len(samples) / rate:.2f} s]"


def test_four_simultaneous_requests_get_their_own_answers(client, server):
    seeds = [0, 1, 2, 3]
    results, errors = {}, []

    def ask(seed):
        try:
            results[seed] = _ask(client, DEMO_PROMPT_WAV, text="Answer:", output_modality="arbitrary", seed=seed)
        except Exception as error:  # reported below, with the seed
            errors.append((seed, error))

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ANSWER_TIMEOUT)
    assert not errors, errors
    assert sorted(results) == seeds
    # Seeded answers: each equals the same request made alone afterwards, and no two are the same.
    alone = {
        seed: _ask(client, DEMO_PROMPT_WAV, text="Answer:", output_modality="arbitrary", seed=seed) for seed in seeds
    }
    for seed in seeds:
        assert results[seed][0] == alone[seed][0] and results[seed][2] == alone[seed][2], seed
    answers = {(transcript, units) for transcript, _, units, _ in results.values()}
    assert len(answers) == 4
    with urllib.request.urlopen(server[0], timeout=10) as response:
        assert response.status == 200


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium ([dev] extra)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    missing = [tool for tool in ("chromium", "chromedriver", "ffmpeg") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed: apt-get install chromium chromium-driver ffmpeg (.ci/run does it)"
        )
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(argument)
    # A microphone that plays a beep, allowed without asking.
    options.add_argument("--use-fake-device-for-media-stream")
    options.add_argument("--use-fake-ui-for-media-stream")
    options.binary_location = shutil.which("chromium")
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def save_screenshot(driver, path: Path) -> Path:
    """A PNG of the page, palette-quantized to stay small (the README's picture is one)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path


def _wait(driver, condition, what: str, timeout: float = ANSWER_TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message=f"waiting for {what}")


def _upload(driver, path: Path, accepted: bool = True) -> None:
    from selenium.webdriver.common.by import By

    upload = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#question-audio input[type=file]"), "upload")
    upload[0].send_keys(str(path))
    if accepted:
        _wait_for_question(driver)


def _wait_for_question(driver) -> None:
    """Until the question's audio is on the server (its download link appears)."""
    from selenium.webdriver.common.by import By

    link = '#question-audio a[data-testid="download-link"]'
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, link), "the question's upload", timeout=30)


def _toast(driver, text: str) -> str:
    """The error toast holding `text` (toasts vanish after a while: check them right after the action)."""
    from selenium.webdriver.common.by import By

    def find(d):
        texts = [element.text for element in d.find_elements(By.CSS_SELECTOR, '[data-testid="toast-body"]')]
        return next((found for found in texts if text in found), None)

    return _wait(driver, find, f"an error message with {text!r}", timeout=30)


def _record(driver, seconds: float) -> None:
    """Records `seconds` from the (fake) microphone into the question."""
    from selenium.webdriver.common.by import By

    source = '#question-audio button[aria-label="Record audio"]'
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, source), "the microphone source")[0].click()
    record = "#question-audio button.record-button"
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, record), "the Record button")[0].click()
    time.sleep(seconds)
    driver.find_element(By.CSS_SELECTOR, "#question-audio button.stop-button").click()
    _wait_for_question(driver)


def _clear_question(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, '#question-audio button[aria-label="Clear"]').click()


def _answer_in_page(driver) -> tuple[str, str]:
    """Clicks Answer and waits for the streamed audio to play and the text and units panels to fill."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#answer-button").click()
    script = (
        "const a = document.querySelector('#answer-audio audio');"
        "return a && a.src.startsWith('blob:') && a.readyState >= 2;"
    )
    _wait(driver, lambda d: d.execute_script(script), "the streamed answer audio")
    text = _wait(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, "#answer-text textarea").get_property("value"),
        "the answer text",
    )
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#answer-wav a"), "the answer WAV download")
    if not driver.find_elements(By.CSS_SELECTOR, "#answer-units textarea"):
        driver.find_element(By.CSS_SELECTOR, "#units-panel button.label-wrap").click()  # the collapsed panel
    units = _wait(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, "#answer-units textarea").get_property("value"),
        "the units panel",
        timeout=10,
    )
    return text, units


def test_browser_answers_a_spoken_question_and_shows_errors(server, bad_files, tmp_path):
    """Uploaded question answered; non-audio and oversize uploads refused with a message; then a recorded question
    answered."""
    driver = _browser()
    try:
        driver.get(server[0])
        _upload(driver, DEMO_PROMPT_WAV)
        text, units = _answer_in_page(driver)
        assert re.fullmatch(r"\[speech \d+\.\d\d s\]", text), text
        assert UNITS.match(units), units
        if os.environ.get("SPIRITLM_WEB_SCREENSHOT"):
            driver.execute_script("window.scrollTo(0, 0)")
            save_screenshot(driver, os.environ["SPIRITLM_WEB_SCREENSHOT"])

        _clear_question(driver)
        _upload(driver, bad_files["not_audio"])
        driver.find_element("css selector", "#answer-button").click()
        _toast(driver, "Could not read notes.wav as audio: upload a WAV, FLAC, OGG or MP3 file.")

        _clear_question(driver)
        _upload(driver, bad_files["oversize"], accepted=False)
        _toast(driver, 'File(s) exceed the maximum allowed size of 1.0 Mb: "long.wav"')

        driver.refresh()
        _record(driver, 1.5)
        text, units = _answer_in_page(driver)
        assert re.fullmatch(r"\[speech \d+\.\d\d s\]", text), text
        assert UNITS.match(units), units
    except Exception:
        save_screenshot(driver, tmp_path / "failure.png")
        raise
    finally:
        driver.quit()
