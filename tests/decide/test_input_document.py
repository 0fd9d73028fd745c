"""The input document's contract: values are checked, never coerced."""

from __future__ import annotations

import pytest

from tests.decide.conftest import VULN_IN_WINDOW, document


def test_input_values_are_not_coerced() -> None:
    from engine.decide import validate
    from engine.decide.errors import InputDocumentError

    doc = document(vulnerabilities=[dict(VULN_IN_WINDOW, max_cvss="8.1")])
    with pytest.raises(InputDocumentError) as caught:
        validate(doc)
    assert "$.vulnerabilities[0].max_cvss" in caught.value.fields
