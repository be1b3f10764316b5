"""--resume's reading of an output file: whole lines kept, a cut last line dropped, a file that
is not ours refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.errors import ConfigError
from signer.resume import answered_lines

SIGNED = '{"line": %d, "id": "%d", "hc1": "HC1:X", "kid": "", "alg": "ES256"}\n'
REJECTED = '{"line": %d, "id": "%d", "errors": [{"code": "json", "path": "", "message": ""}]}\n'


def test_whole_lines_are_answered_and_a_cut_line_is_dropped(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    whole = SIGNED % (1, 1) + REJECTED % (3, 3) + SIGNED % (4, 4)
    out.write_text(whole + (SIGNED % (5, 5))[:20])

    answered = answered_lines(out)

    assert answered.lines == {1, 3, 4} and answered.rejected == 1
    assert out.read_text() == whole
    pending = list(answered.pending([(1, "a"), (3, "c"), (4, "d"), (5, "e"), (7, "g")]))
    assert pending == [(5, "e"), (7, "g")]


def test_a_missing_or_empty_file_answers_nothing(tmp_path: Path) -> None:
    assert answered_lines(tmp_path / "absent.jsonl").lines == frozenset()
    (tmp_path / "cut.jsonl").write_text('{"line": 1, "h')
    assert answered_lines(tmp_path / "cut.jsonl").lines == frozenset()
    assert (tmp_path / "cut.jsonl").read_text() == ""


@pytest.mark.parametrize(
    "text",
    [
        "not json\n",
        "[1, 2]\n",
        '{"line": "1", "hc1": "HC1:X"}\n',
        '{"line": 0, "hc1": "HC1:X"}\n',
        '{"line": true, "hc1": "HC1:X"}\n',
        '{"line": 1}\n',  # neither hc1 nor errors
        SIGNED % (1, 1) + SIGNED % (1, 1),  # the same line twice
        '{"line": 1, "valid": true, "warnings": []}\n',  # signer validate's output
    ],
)
def test_a_file_that_is_not_our_output_is_refused_untouched(tmp_path: Path, text: str) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(text + "cut")
    with pytest.raises(ConfigError, match="is not a result line"):
        answered_lines(out)
    assert out.read_text() == text + "cut"
