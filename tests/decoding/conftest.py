"""Fixtures of the decoding tests: the tiny GPT-2 and the padded prompts of ``tiny.py``."""

import pytest

from tests.decoding.tiny import PROMPTS, left_padded, tiny_gpt2


@pytest.fixture(scope="module")
def model():
    return tiny_gpt2()


@pytest.fixture(scope="module")
def prompts():
    return left_padded(PROMPTS)
