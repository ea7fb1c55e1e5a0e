"""The `auto_map` of a converted repo: `trust_remote_code=True` loading without `import transformers_spiritlm`.

SPIRIT LM is not part of transformers, so a converted repo names its classes the Hub's way for architectures outside
it: `auto_map` entries in `config.json`, `processor_config.json` and `preprocessor_config.json` point at a few-line
module in the repo, [`REMOTE_CODE_FILE`], that imports them from the installed package. Where the package is missing,
transformers reports it by name (`... requires the following packages ...: transformers_spiritlm`).
"""

import json
from pathlib import Path


REMOTE_CODE_FILE = "spiritlm_remote.py"
_MODULE = REMOTE_CODE_FILE.removesuffix(".py")
REMOTE_CODE = '''"""SPIRIT LM for `trust_remote_code=True`: the classes come from the installed package.

    pip install transformers-spiritlm
"""

from transformers_spiritlm import (  # noqa: F401
    SpiritLMConfig,
    SpiritLMFeatureExtractor,
    SpiritLMForCausalLM,
    SpiritLMModel,
    SpiritLMProcessor,
)
'''
AUTO_MAPS = {
    "config.json": {
        "AutoConfig": f"{_MODULE}.SpiritLMConfig",
        "AutoModel": f"{_MODULE}.SpiritLMModel",
        "AutoModelForCausalLM": f"{_MODULE}.SpiritLMForCausalLM",
    },
    "processor_config.json": {"AutoProcessor": f"{_MODULE}.SpiritLMProcessor"},
    "preprocessor_config.json": {"AutoFeatureExtractor": f"{_MODULE}.SpiritLMFeatureExtractor"},
}


def add_auto_map(repo_dir: str | Path) -> None:
    """Writes [`REMOTE_CODE_FILE`] into the converted repo `repo_dir` and adds the `auto_map` entries pointing at it
    to its configuration files (each must exist)."""
    repo_dir = Path(repo_dir)
    for name, auto_map in AUTO_MAPS.items():
        path = repo_dir / name
        config = json.loads(path.read_text(encoding="utf-8"))
        config["auto_map"] = {**config.get("auto_map", {}), **auto_map}
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (repo_dir / REMOTE_CODE_FILE).write_text(REMOTE_CODE, encoding="utf-8")
