"""Nothing planted survives: the planted corpus (tests/dicom_corpus.py) through deidentify and verify.

Each test also counts what was accepted, so a de-identifier that refused everything could not pass.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from anonymizer.deidentify import Profile, deidentify, identifying_values
from anonymizer.profile import Option, RuleTable
from anonymizer.pseudonyms import Pseudonymizer
from anonymizer.verify import check
from tests.dicom_corpus import Planted, datasets_strategy, find_values, locate, planted_dataset

PROFILE = Profile(Pseudonymizer(b"s" * 32))
# Options that retain nothing the corpus plants (the retain options keep, by design, some planted values).
CLEANING = [Option.CLEAN_DESCRIPTORS, Option.CLEAN_STRUCTURED_CONTENT, Option.CLEAN_GRAPHICS,
            Option.RETAIN_SAFE_PRIVATE]


def leaks(out: Dataset, planted: Planted) -> tuple[dict[str, list[str]], set[str]]:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, out, enforce_file_format=True)
    return locate(out, planted.values, ignore_case=True), find_values(buffer.getvalue(), planted.values,
                                                                      ignore_case=True)


@pytest.mark.parametrize("seed", range(12))
def test_the_planted_corpus_leaks_nothing(seed: int) -> None:
    original, planted = planted_dataset(seed)
    assert find_values(original, planted.values) == planted.values  # the corpus does plant them
    out, _ = deidentify(original, PROFILE)
    assert leaks(out, planted) == ({}, set())
    check(identifying_values(original, PROFILE, RuleTable.load()), out)


@pytest.mark.parametrize("option", CLEANING)
def test_cleaning_options_leak_nothing_either(option: Option) -> None:
    profile = Profile(Pseudonymizer(b"s" * 32), frozenset({option}))
    original, planted = planted_dataset(7)
    out, _ = deidentify(original, profile)
    assert leaks(out, planted) == ({}, set())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(datasets_strategy(), min_size=2, max_size=4))
def test_random_datasets_with_planted_values_leak_nothing(batch: list[tuple[Dataset, Planted]]) -> None:
    accepted = 0
    for original, planted in batch:
        out, _ = deidentify(original, PROFILE)  # a CT without burned-in text: never refused
        assert leaks(out, planted) == ({}, set())
        check(identifying_values(original, PROFILE, RuleTable.load()), out)
        accepted += 1
    assert accepted == len(batch)
