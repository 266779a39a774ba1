"""The operator process stays small: it never imports the ML stack."""

from __future__ import annotations

import subprocess
import sys

from tests.operator.helpers import ROOT

HEAVY = ("torch", "transformers", "peft", "vllm", "accelerate", "numpy")


def test_the_operator_never_imports_the_ml_stack():
    code = ("import sys, selfguide_operator.main, selfguide_operator.handlers; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_standard_library_operator_module_is_not_shadowed_even_from_the_repository_root():
    code = "import operator, sysconfig; print(operator.__file__.startswith(sysconfig.get_paths()['stdlib']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "True"
