"""docs/deidentification.md, generated: exactly which attribute gets which action under which options.

Everything in it comes from the package data (`anonymizer.profile`: Table E.1-1, the safe private list),
from the code's own documentation constants, and from docs/peer-comparison.md (what the peers leak, made
by `make bench`). `make docs` runs `python -m anonymizer.docs --peers docs/peer-comparison.md`; a test
checks that the file in the repository is what this prints.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

from anonymizer.pixels import CLEAN_PIXEL_DATA_DOCS
from anonymizer.profile import (
    ACTION_CODES,
    BASIC_PROFILE_CODE,
    PROTECTION_ORDER,
    SAFE_PRIVATE_EDITION,
    TABLE_SOURCES,
    Option,
    RuleTable,
    standard_safe_private,
)

COMMAND = "python -m anonymizer.docs --peers docs/peer-comparison.md > docs/deidentification.md"
LEAK_HEADING = "## What survives"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(peer_comparison: str) -> str:
    """docs/deidentification.md: which attribute gets which action under which options. `peer_comparison`
    is the text of docs/peer-comparison.md, whose table of what survives is repeated here."""
    table = RuleTable.load()
    columns = [o for o in Option if o.column]
    out = [
        "# DICOM de-identification (PS3.15 Annex E)",
        "",
        "Generated from the package data and [peer-comparison.md](peer-comparison.md) by `make docs`",
        f"(`{COMMAND}`); do not edit by hand.",
        "",
        "## Sources and editions",
        "",
        TABLE_SOURCES,
        "",
        "## Action codes",
        "",
        "Each attribute of Table E.1-1 has an action code under the Basic Profile, and an option may override it.",
        "",
        "| Code | Action |",
        "|---|---|",
        *(f"| {code} | {text} |" for code, text in ACTION_CODES.items()),
        "",
        "## How combined codes are resolved",
        "",
        "A combined code leaves the choice to the attribute's Type in the IOD at hand (Z/D: Z unless D is",
        "required by a Type 1 attribute; X/Z: X unless Z is required by Type 2; and so on). ServiceGate does not",
        "carry the IOD module tables, so it takes the choice that keeps *any* IOD valid: **D** when D is among",
        "the choices (Z/D, X/D, X/Z/D), else **Z** (X/Z); **X/Z/U\\*** keeps the sequence and replaces every UID",
        "inside it. A dummy or an empty value carries no information, so this costs nothing in privacy, and",
        "every output stays valid for `dciodvfy`. Patient's Name and Patient ID get keyed pseudonyms",
        "(`ANONYMOUS^` + 8 hex digits, `SG-` + 16 hex digits) instead of a fixed dummy, so a patient's",
        "studies stay together without revealing who they are.",
        "",
        "## How the other actions are carried out",
        "",
        "| code | what ServiceGate does |",
        "|---|---|",
        "| X | removes the element |",
        "| Z | empty value; a sequence keeps its structure as for D (an empty one is invalid where items"
        " are required) |",
        "| D | a dummy of the VR: `ANONYMOUS` (PN), `REMOVED` (text), `19000101` (DA), `000000` (TM), `0` (numbers),"
        " two zero bytes (binary); a sequence keeps its structure: its items are processed by the table, and the"
        " free text of attributes the table does not list (an SR's Text Value) becomes a dummy too; codes stay |",
        "| K | keeps the value; a sequence keeps its items, each processed by the table |",
        "| U | `2.25.` + the first 128 bits of HMAC-SHA-256(site key, original UID) as a decimal; well-known UIDs"
        " (SOP classes, transfer syntaxes, coding schemes) are kept |",
        "| C | cleans by the kind of value, below |",
        "",
        "**C (clean), method by kind of value:**",
        "",
        "- dates and times, under Retain Longitudinal Temporal Information with Modified Dates: shifted by the",
        "  patient's keyed offset (whole days, 1 to 10 years into the past, the same for all of a patient's",
        "  studies, so intervals stay true; times are unchanged); a value that does not parse is removed;",
        "- sequences (code sequences, SR content, graphic annotations): kept, every item processed by the table,",
        "  and the free text of attributes the table does not list cleaned the same way;",
        "- person names: replaced by `ANONYMOUS`;",
        "- text: kept, with every identifying value inside it (see below) replaced by `REMOVED`;",
        "- binary values (overlay bits, graphics data): they cannot be read for text, so they are removed;",
        "- numbers and code strings: kept (they carry no names).",
        "",
        "## ServiceGate's additions to the table",
        "",
        "- Overlay Description (60xx,0022) and Overlay Label (60xx,1500) are free text the table does not list;",
        "  they are treated like Overlay Comments (60xx,4000): removed, or cleaned under Clean Graphics.",
        "- Long free text (VR LT, ST or UT) in an attribute the table does not list (a Text Value outside a",
        "  structured report's content, say) is removed: it is the likeliest place for a name nobody planned for.",
        "  Inside a sequence whose action is D, the free text of unlisted attributes becomes a dummy; inside one",
        "  whose action is C, it is cleaned. Coded entries (Code Value, Coding Scheme, Code Meaning) always stay.",
        "",
        "## Compared with other de-identifiers",
        "",
        "The planted corpus of the tests (identifying values planted everywhere a de-identifier can miss them)",
        "run through dicognito, deid and dicom-anonymizer, each with its default profile, beside ServiceGate's",
        "Basic profile: the number of files (of the corpus) in whose output at least one planted value of each",
        "kind survived. How each tool is run, and where each leaks, is in [peer-comparison.md](peer-comparison.md)",
        "(made by `make bench`), from which this table is taken.",
        "",
        *peer_leak_table(peer_comparison),
        "",
        "## Identifying values, the safety net and the verification",
        "",
        "An *identifying value* of a dataset is a value the profile removes or replaces that names or points to",
        "the patient or the original instances: every component (family, given, middle, prefix, suffix, in the",
        "alphabetic, ideographic and phonetic groups) and every whole group of every person name removed or",
        "replaced; Patient ID, Other Patient IDs, Study ID, Accession Number, Medical Record Locator and the",
        "Patient's Birth Date; the patient's address, telephone numbers and telecom information, and the",
        "names and addresses of the institution and department, when the profile removes them; and every",
        "instance UID the profile replaces. Values an option retains (the UIDs",
        "under Retain UIDs, the dates under Retain Longitudinal Temporal Information with Full Dates) are not",
        "identifying values, nor are dummy words that name nobody (ANONYMOUS, REMOVED, UNKNOWN, TEST, PATIENT,",
        "PHANTOM, DEMO). Values of 4 characters or more (6 digits or more for a number) are searched as",
        "substrings, case-insensitively; shorter ones (a patient named \"Li\") only match a name or ID element",
        "whose whole value, or a name component, is equal, so they do not make every file fail.",
        "",
        "- **Safety net** (inside `deidentify`): after the table's actions, the identifying content of any",
        "  element anywhere that still holds an identifying value is removed (text scrubbed, names replaced,",
        "  UIDs replaced, binary values removed), keeping the element where it can so the file stays valid;",
        "  its tag is listed in the report. Numbers, dates, code strings and coded entries are not searched.",
        "- **Verification** (a separate pass, `anonymizer/verify.py`): the identifying values are computed again",
        "  from the input and searched for in the output, parsed (every element, file meta and private blocks",
        "  included) and as encoded bytes outside the pixel data, in every character set the dataset declares",
        "  (and UTF-8 and Latin-1). Any hit refuses the file; the reason names where, never the value.",
        "- **Refused outright**: Burned In Annotation = YES; images without that attribute from modalities and",
        "  SOP classes that commonly carry burned-in text (US, IVUS, visible light, secondary capture, screen and",
        "  document captures); any encapsulated document (PDF, CDA). An image that a configured pixel-cleaning",
        "  rule matches is admitted and cleaned (see Clean Pixel Data below); nothing admits a document.",
        "- The file meta information is regenerated from the de-identified dataset, and the 128-byte preamble",
        "  is zeroed. Private blocks are removed, except attributes on the safe-private list under Retain Safe",
        "  Private (their creator element stays with them).",
        "- Added to every output: Patient Identity Removed = YES, De-identification Method, De-identification",
        "  Method Code Sequence (113100 and one code per option), and Longitudinal Temporal Information",
        "  Modified (REMOVED, UNMODIFIED or MODIFIED).",
        "",
        *CLEAN_PIXEL_DATA_DOCS,
        "",
        "## Options",
        "",
        f"The Basic Profile is recorded as CID 7050 code {BASIC_PROFILE_CODE[0]} ({BASIC_PROFILE_CODE[1]}); each "
        "option used adds its own code to De-identification Method Code Sequence (0012,0064).",
        "",
        "| Option | CID 7050 code | Code meaning | Rows it overrides |",
        "|---|---|---|---|",
        *(f"| `{o.value}` | {o.code} | {o.meaning} | {sum(o in r.overrides for r in table.rules)} |" for o in Option),
        "",
        "An option's action overrides the Basic Profile's (PS3.15 E.3). Where two selected options override the "
        "same attribute differently (for example Calibration Date (0014,407E): K under `retain-device-identity`, "
        "C under `retain-long-modified-dates`), the more protective action wins, in this order from least to most "
        f"protective: {', '.join(PROTECTION_ORDER)}. `retain-long-full-dates` and `retain-long-modified-dates` are "
        "mutually exclusive and refused together. Clean Pixel Data has no column in the table: it acts on the "
        "pixels, through configured rectangles.",
        "",
        "## Table E.1-1",
        "",
        "A blank option cell means the option does not override the Basic Profile for that attribute. "
        "(50xx,xxxx) stands for the repeating groups 5000 to 501E (even) with any element; (60xx,3000) and "
        "(60xx,4000) for the groups 6000 to 601E (even) with that element; (gggg,eeee) for every private "
        "attribute, which is removed unless the Retain Safe Private Option keeps it (see below).",
        "",
        "| Tag | Name | Keyword | Basic | " + " | ".join(o.value for o in columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for rule in table.rules:
        tag = rule.pattern + (" †" if rule.from_2026c else "")
        name = rule.name + (" (retired)" if rule.retired else "")
        cells = [tag, name, f"`{rule.keyword}`" if rule.keyword else "", rule.basic]
        out.append("| " + " | ".join(_cell(c) for c in [*cells, *(rule.overrides.get(o, "") for o in columns)]) + " |")
    out += [
        "",
        "† Added in the DICOM 2026c edition; the source carries only the Basic Profile column, so the option "
        'cells of these rows are blank: "no override".',
        "",
        f"## Safe private attributes (Table E.3.10-1, DICOM {SAFE_PRIVATE_EDITION})",
        "",
        "With the Retain Safe Private Option these private attributes are kept, with their Private Creator; "
        "every other private attribute is removed. The site configuration can extend the list. The standard "
        "notes that vendors do not guarantee them to be safe.",
        "",
        "| Group | Private Creator | Element | VR | Meaning |",
        "|---|---|---|---|---|",
        *(f"| {s.group:04X} | {_cell(s.creator)} | ({s.group:04X},xx{s.element:02X}) | {s.vr} | {_cell(s.meaning)} |"
          for s in standard_safe_private()),
        "",
    ]
    return "\n".join(out)


def peer_leak_table(peer_comparison: str) -> list[str]:
    """The table under "## What survives" in docs/peer-comparison.md, as its lines."""
    lines = peer_comparison.splitlines()
    if LEAK_HEADING not in lines:
        raise ValueError(f'docs/peer-comparison.md has no "{LEAK_HEADING}" section: run `make bench` again')
    after = lines[lines.index(LEAK_HEADING) + 1:]
    table = list(itertools.takewhile(lambda line: line.startswith("|"), itertools.dropwhile(
        lambda line: not line.startswith("|"), after)))
    if len(table) < 3:
        raise ValueError(f'the "{LEAK_HEADING}" section of docs/peer-comparison.md holds no table')
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anonymizer.docs", description="Print docs/deidentification.md.")
    parser.add_argument("--peers", type=Path, required=True, metavar="FILE",
                        help="docs/peer-comparison.md, made by `make bench`: its table of leaks is repeated")
    args = parser.parse_args(argv)
    sys.stdout.write(markdown(args.peers.read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
