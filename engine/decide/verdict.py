"""The verdict: what the policy decided, why, and what the executor must do."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.decide.input_document import Failure, Image

VerdictName = Literal["admit", "patch", "delay", "reject"]

FAIL_CLOSED_RULES = {
    "evaluation_undefined": "the policy gave no decision for this input",
    "evaluator_error": "the evaluator failed",
    "evaluation_timeout": "the evaluation did not finish in time",
    "malformed_decision": "the policy's decision does not have the verdict's shape",
}
"""Reasons the engine itself gives when it rejects because the policy could not decide."""


class Reason(BaseModel):
    """One reason, naming the rule that produced it and what it concerns."""

    model_config = ConfigDict(frozen=True, extra="allow")

    rule: str
    message: str
    vulnerability: str | None = None
    failure: Failure | None = None


class Obligation(BaseModel):
    """A machine obligation for the executor."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: Literal["place_on_image", "patch_host", "recheck_at", "prepare_patched_configuration"]
    host: str | None = None
    image: Image | None = None
    at_ns: int | None = None
    vulnerabilities: list[str] = Field(default_factory=list)

    @property
    def at(self) -> dt.datetime | None:
        if self.at_ns is None:
            return None
        return dt.datetime.fromtimestamp(self.at_ns / 1e9, tz=dt.UTC)


class Decision(BaseModel):
    """The policy's answer, normalised (sorted) so that two evaluators compare equal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: VerdictName
    reasons: list[Reason] = Field(default_factory=list)
    obligations: list[Obligation] = Field(default_factory=list)
    warnings: list[Reason] = Field(default_factory=list)

    @classmethod
    def parse(cls, value: Any) -> Decision:
        """Validate and sort a raw policy result (raises ``ValueError`` when malformed)."""
        try:
            decision = cls.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from exc
        return decision.normalised()

    def normalised(self) -> Decision:
        def reason_key(r: Reason) -> tuple[str, str, str]:
            return (r.rule, r.vulnerability or "", r.message)

        return Decision(
            verdict=self.verdict,
            reasons=sorted(self.reasons, key=reason_key),
            obligations=sorted(self.obligations,
                               key=lambda o: (o.type, o.model_dump_json())),
            warnings=sorted(self.warnings, key=reason_key),
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Verdict(Decision):
    """A decision as the engine returns and records it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_id: str
    bundle_revision: str | None
    evaluator: str
    path: str
    fail_closed: bool = False
    """True when the engine rejected because the policy could not decide."""

    @property
    def decision(self) -> Decision:
        return Decision(verdict=self.verdict, reasons=self.reasons,
                        obligations=self.obligations, warnings=self.warnings)


def fail_closed(rule: str, detail: str) -> Decision:
    """The reject the engine gives when the policy could not decide."""
    return Decision(verdict="reject", reasons=[
        Reason(rule=rule, message=f"{FAIL_CLOSED_RULES[rule]}: {detail}; rejected (fail closed)")
    ])
