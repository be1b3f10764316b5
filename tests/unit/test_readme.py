"""The README promises to list every item error code and verify reason, and the --help output."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from signer.cli import main
from signer.front.handlers import LEDGER_ERROR_CODES
from signer.front.policy import POLICY_ERROR_CODES
from signer.hcert.validation import ERROR_CODES
from signer.hcert.verify import VERIFY_REASONS
from signer.service import SERVICE_ERROR_CODES
from signer.validate._check import VALIDATE_ERROR_CODES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "code",
    sorted(
        {
            *ERROR_CODES,
            *SERVICE_ERROR_CODES,
            *POLICY_ERROR_CODES,
            *LEDGER_ERROR_CODES,
            *VALIDATE_ERROR_CODES,
            *VERIFY_REASONS,
        }
    ),
)
def test_readme_lists_every_code(code: str) -> None:
    assert f"| `{code}` |" in README


def test_readme_help_block_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal width
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    block = out.getvalue().strip()
    assert block in README, "README's `signer --help` block is stale: paste the current output"
