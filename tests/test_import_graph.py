"""The package's import graph: modules import each other's public names only, the library never imports the command
line or the test-support code, and neither the package nor `spiritlm demo` imports the converter."""

import ast
import subprocess
import sys
from pathlib import Path

import transformers_spiritlm


PACKAGE = Path(transformers_spiritlm.__file__).parent
NAME = "transformers_spiritlm"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """`(imported module, names)` of every import of a package module in `path`, relative ones resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            if target.startswith(NAME):
                found.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith(NAME)]
    return found


def _library_files() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not {"cli", "testing", "conversion"} & set(path.relative_to(PACKAGE).parts[:-1])
    ]


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{_module_name(path)}: {name} from {target}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for target, names in _imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__") and target != _module_name(path)
    ]
    assert private == []


def test_the_library_imports_neither_the_command_line_nor_test_support_nor_the_converter():
    reached = {
        f"{_module_name(path)} -> {target}"
        for path in _library_files()
        for target, _ in _imports(path)
        if target.startswith((f"{NAME}.cli", f"{NAME}.testing", f"{NAME}.conversion"))
    }
    assert reached == set()


def test_import_and_the_demo_do_not_load_the_converter(tmp_path):
    script = (
        "import sys\n"
        "import transformers_spiritlm\n"
        "print(sorted(m for m in sys.modules if m.startswith('transformers_spiritlm.conversion')))\n"
        "from transformers_spiritlm.cli import main\n"
        f"assert main(['demo', '--cache-dir', {str(tmp_path / 'cache')!r}, '-o', {str(tmp_path / 'out.wav')!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('transformers_spiritlm.conversion')))\n"
        "print(sorted(m for m in sys.modules if m.startswith('transformers_spiritlm.testing')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == "[]"
    assert lines[-2] == "[]"
    assert "'transformers_spiritlm.testing'" in lines[-1]  # the demo did build its tiny repo
    assert (tmp_path / "out.wav").is_file()
