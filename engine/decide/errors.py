"""Errors of the decision part. Each names the field, file or rule that was wrong.

Every error here derives from :class:`DecideError`, itself a :class:`VigilError`, so the
CLI turns each into one sentence with a tip and the documented exit code. The errors of
an evaluator backend (``EvaluatorError``, ``EvaluationTimeout``) belong to the evaluator
seam, :mod:`engine.decide.evaluators`.
"""

from __future__ import annotations

from engine.errors import EXIT_DATABASE, EXIT_INPUT, EXIT_NOT_FOUND, EXIT_USAGE, VigilError


class DecideError(VigilError):
    """Root of the errors raised while deciding a placement."""

    exit_code = EXIT_INPUT


class InputDocumentError(DecideError):
    """An input document does not match the published schema.

    ``problems`` holds one ``(field, message)`` pair per violation, the field written as
    a JSON path such as ``$.host.attestation.status``.
    """

    exit_code = EXIT_USAGE  # the caller's document is wrong, as a bad argument is

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        shown = "; ".join(f"{field}: {message}" for field, message in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(
            f"input document does not match schema version 1: {shown}{more}",
            tip="run `vigil schema input` for the schema; every field a policy reads is "
            "documented in docs/policies.md",
        )
        self.problems = problems

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.problems]


class PolicyError(DecideError):
    """A policy file cannot be parsed or compiled, or breaks the layout rules."""

    def __init__(self, summary: str, *, file: str | None = None, line: int | None = None,
                 tip: str | None = None) -> None:
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{summary}",
                         tip=tip or "fix the policy and run `vigil policy test` again")
        self.file = file
        self.line = line


class PolicyNotFoundError(PolicyError):
    """The policy folder or file named does not exist."""

    exit_code = EXIT_NOT_FOUND


class BundleError(DecideError):
    """A bundle cannot be built, read, or does not follow OPA's bundle format."""


class BundleVerificationError(BundleError):
    """A bundle's signature, key, scope or file hashes do not verify."""

    def __init__(self, summary: str, *, file: str | None = None, tip: str | None = None) -> None:
        super().__init__(
            summary,
            tip=tip or "rebuild and sign the bundle with `vigil bundle build --signing-key …`, "
            "or check that the verification key matches the signing key",
        )
        self.file = file


class DecisionLogError(DecideError):
    """The decision log could not be opened, written or read."""

    exit_code = EXIT_DATABASE
