"""A converted repo loads with `trust_remote_code=True` and no `import transformers_spiritlm` (its `auto_map` points at
a module in the repo that imports the installed package), and says which package is missing when it is not installed.
Each case runs in a fresh interpreter that never imports the package itself."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from transformers_spiritlm.remote_code import REMOTE_CODE_FILE
from transformers_spiritlm.testing import build_tiny_repo


# Makes `transformers_spiritlm` unimportable in the child, as on a machine where it is not installed.
HIDE_PACKAGE = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "transformers_spiritlm":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, _NotInstalled())
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return build_tiny_repo(tmp_path_factory.mktemp("remote") / "tiny", speech_tokenizer=False, vocoder=False)


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )


def test_repo_carries_an_auto_map_to_a_module_that_imports_the_package(repo):
    config = json.loads((repo / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "spiritlm_remote.SpiritLMConfig",
        "AutoModel": "spiritlm_remote.SpiritLMModel",
        "AutoModelForCausalLM": "spiritlm_remote.SpiritLMForCausalLM",
    }
    assert json.loads((repo / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "spiritlm_remote.SpiritLMProcessor"
    }
    assert "from transformers_spiritlm import" in (repo / REMOTE_CODE_FILE).read_text()


def test_trust_remote_code_loads_without_importing_the_package(repo, tmp_path):
    result = _run(
        f"""
        import sys
        from transformers import AutoModelForCausalLM, AutoProcessor
        assert "transformers_spiritlm" not in sys.modules
        model = AutoModelForCausalLM.from_pretrained({str(repo)!r}, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained({str(repo)!r}, trust_remote_code=True)
        print(type(model).__module__, type(model).__name__, type(processor).__name__)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "transformers_spiritlm.modeling_spiritlm",
        "SpiritLMForCausalLM",
        "SpiritLMProcessor",
    ]


def test_plain_import_loads_without_trust_remote_code(repo, tmp_path):
    result = _run(
        f"""
        from transformers import AutoModelForCausalLM
        import transformers_spiritlm
        print(type(AutoModelForCausalLM.from_pretrained({str(repo)!r})).__name__)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SpiritLMForCausalLM"]
    assert not (tmp_path / "modules").exists()  # the repo's module was not used


def test_missing_package_is_named(repo, tmp_path):
    result = _run(
        HIDE_PACKAGE
        + f"""
from transformers import AutoModelForCausalLM
try:
    AutoModelForCausalLM.from_pretrained({str(repo)!r}, trust_remote_code=True)
except ImportError as error:
    print(error)
""",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "requires the following packages that were not found in your environment: transformers_spiritlm" in (
        result.stdout
    )
