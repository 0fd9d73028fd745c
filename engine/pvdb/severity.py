"""CVSS scores computed from their vectors with the ``cvss`` library.

A feed's stated base score is never trusted on its own: the vector is parsed and the
score computed, so a record whose score and vector disagree is caught (a warning names
both) and the computed value is kept.
"""

from __future__ import annotations

import functools

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

from engine.errors import RecordError
from engine.pvdb.models import SeverityFact, VulnId

_RATINGS = ((9.0, "CRITICAL"), (7.0, "HIGH"), (4.0, "MEDIUM"), (0.1, "LOW"), (0.0, "NONE"))


def rating(score: float) -> str:
    """The CVSS v3/v4 qualitative rating of a base score."""
    for floor, name in _RATINGS:
        if score >= floor:
            return name
    return "NONE"


@functools.lru_cache(maxsize=65_536)
def _score(vector: str) -> tuple[str, float]:
    """(CVSS version, base score) of a vector; feeds repeat vectors, so this is cached."""
    if vector.startswith("CVSS:4.0/"):
        return "4.0", float(CVSS4(vector).base_score)
    if vector.startswith(("CVSS:3.1/", "CVSS:3.0/")):
        return vector[5:8], float(CVSS3(vector).base_score)
    if vector.startswith(("AV:", "(AV:")):
        return "2.0", float(CVSS2(vector.strip("()")).base_score)
    raise ValueError(vector)


def from_vector(
    vuln_id: VulnId,
    provider: str,
    vector: str,
    *,
    stated_score: float | None = None,
    pointer: str = "$",
    warnings: list[str] | None = None,
) -> SeverityFact:
    """Compute a :class:`SeverityFact` from a CVSS vector (v2, v3.0, v3.1 or v4.0)."""
    text = vector.strip()
    try:
        version, score = _score(text)
    except CVSSError as exc:
        raise RecordError(f"invalid CVSS vector {vector!r}: {exc}", pointer=pointer) from exc
    except ValueError:
        raise RecordError(f"not a CVSS vector: {vector!r}", pointer=pointer) from None
    if stated_score is not None and abs(stated_score - score) > 0.05 and warnings is not None:
        warnings.append(
            f"{pointer}: stated base score {stated_score} differs from the vector's {score};"
            " kept the computed score"
        )
    return SeverityFact(
        vuln_id=vuln_id,
        provider=provider,
        cvss_version=version,
        vector=text,
        base_score=score,
        base_severity=("HIGH" if version == "2.0" and score >= 9.0 else rating(score)),
    )
