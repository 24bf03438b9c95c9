"""docs/deidentification.md is generated (anonymizer.docs): it is current, complete, and repeats the peer table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anonymizer import profile
from anonymizer.docs import LEAK_HEADING, markdown, peer_leak_table
from anonymizer.profile import Option, RuleTable

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "docs" / "peer-comparison.md"


@pytest.fixture(scope="module")
def text() -> str:
    return markdown(PEERS.read_text())


def test_docs_deidentification_md_is_up_to_date(text: str) -> None:
    assert (ROOT / "docs" / "deidentification.md").read_text() == text, (
        "docs/deidentification.md is stale: run `make docs`")


def test_make_docs_command_prints_the_markdown(text: str) -> None:
    done = subprocess.run([sys.executable, "-m", "anonymizer.docs", "--peers", str(PEERS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == text


def test_the_markdown_covers_every_rule_option_and_safe_private_attribute(text: str) -> None:
    table = RuleTable.load()
    assert "\n## How combined codes are resolved\n" in text
    assert profile.TABLE_SOURCES in text
    assert all(f"| `{o.value}` | {o.code} | {o.meaning} |" in text for o in Option)
    rows = [line for line in text.splitlines() if line.startswith("| (")]
    assert len(rows) == len(table.rules)
    assert sum(row.split(" | ")[0].endswith("†") for row in rows) == 35
    assert "| (0008,0018) | SOP Instance UID | `SOPInstanceUID` | U |  | K |" in text
    assert "| 7053 | Philips PET Private Group | (7053,xx00) | DS |" in text
    assert "Table E.3.10-1, DICOM 2023b" in text


def test_the_peer_table_is_repeated_with_servicegate_at_zero(text: str) -> None:
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith(("| ServiceGate |", "| dicognito |", "| deid |", "| dicom-anonymizer |"))}
    assert set(rows) == {"ServiceGate", "dicognito", "deid", "dicom-anonymizer"}
    cells = [c.strip() for c in rows["ServiceGate"].strip("|").split("|")[1:]]
    assert len(cells) == 12
    assert all(c == "0" for c in cells)
    # each peer leaks in some kind: its "any kind" column is above zero
    header = next(line for line in text.splitlines() if line.startswith("| tool | name |"))
    column = [c.strip() for c in header.strip("|").split("|")].index("any kind")
    for peer in ("dicognito", "deid", "dicom-anonymizer"):
        assert int(rows[peer].strip("|").split("|")[column]) > 0


def test_a_peer_comparison_without_its_table_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="What survives"):
        peer_leak_table("# peers\n\nno table here\n")
    with pytest.raises(ValueError, match="holds no table"):
        peer_leak_table(f"{LEAK_HEADING}\n\nnothing yet\n")
