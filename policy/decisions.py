"""What every rule check returns: the findings and the rule IDs behind them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Finding(BaseModel):
    """One reason a rule refused something: the field it concerns, the rule ID, a message."""

    model_config = ConfigDict(frozen=True)

    field: str
    rule: str
    message: str


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    findings: tuple[Finding, ...] = ()
    flags: tuple[Finding, ...] = ()

    @classmethod
    def merge(cls, *decisions: Decision) -> Decision:
        return cls(
            findings=tuple(f for d in decisions for f in d.findings),
            flags=tuple(f for d in decisions for f in d.flags),
        )

    @property
    def allowed(self) -> bool:
        return not self.findings

    @property
    def rules(self) -> list[str]:
        return sorted({f.rule for f in self.findings})

    def errors(self) -> dict[str, str]:
        """Field -> message (with its rule), the shape of a 422's `errors`."""
        out: dict[str, str] = {}
        for f in self.findings:
            msg = f"{f.message} ({f.rule})"
            out[f.field] = f"{out[f.field]}; {msg}" if f.field in out else msg
        return out
