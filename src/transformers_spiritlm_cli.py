"""Entry point of the `spiritlm` console script.

`import transformers_spiritlm` registers SPIRIT LM with the transformers Auto classes, which loads torch and
transformers: seconds, up to a minute on a busy machine. Imported through this module, the package defers that
registration to `main`, once the arguments parsed, so that `spiritlm --help` and argument errors answer at once.
"""

from transformers_spiritlm.cli import main


__all__ = ["main"]
