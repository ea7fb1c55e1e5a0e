"""The web page: `spiritlm serve` on the tiny demo model, driven by headless Chromium (Selenium) and `gradio_client`.

One server per module. Needs the `[web]` extra; the browser test also needs Debian's `chromium`, `chromium-driver`
and `ffmpeg` (`.ci/run` installs them). Set SPIRITLM_WEB_SCREENSHOT=path.png to save the README screenshot.
"""

import io
import os
import re
import shutil
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
ANSWER_TIMEOUT = 120
PROMPT_ORDER = "speech, then text"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`spiritlm serve` on a free port with the tiny demo model (built in a fresh cache): `(url, cache_dir)`."""
    pytest.importorskip("gradio", reason="the web page needs the [web] extra (gradio)")
    cache_dir = tmp_path_factory.mktemp("web-cache")
    port = _free_port()
    log_path = cache_dir / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    command = [sys.executable, "-m", "transformers_spiritlm.cli", "serve", "--port", str(port), "--device", "cpu"]
    command += ["--cache-dir", str(cache_dir), "--max-upload-mb", str(MAX_UPLOAD_MB)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
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
        yield url, cache_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


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
    return {"not_audio": not_audio, "short": short, "oversize": oversize}


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
    from transformers_spiritlm.web import PROMPT_ORDERS, _prompt_segments

    with pytest.raises(gradio.Error) as error:
        _prompt_segments(pipe, str(bad_files["oversize"]), "", PROMPT_ORDERS[0], max_upload_bytes=2**20)
    assert (
        error.value.message == "The audio long.wav is 1.2 MB; this server takes at most 1 MB. Upload a shorter clip."
    )
    segments = _prompt_segments(pipe, str(DEMO_PROMPT_WAV), "Answer:", PROMPT_ORDERS[1], max_upload_bytes=2**20)
    assert [segment["type"] for segment in segments] == ["text", "speech"]
    assert segments[1]["sampling_rate"] == 16000 and segments[1]["audio"].shape[0] == 1


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
