"""Pure governance rules: no I/O, no clock (callers pass `now`), importable inside the workflow
sandbox. Every decision names the rule IDs of spec/RULES.md behind it."""

from policy.decisions import Decision, Finding
from policy.document import DEFAULT_POLICY, Deadline, PolicyDocument
from policy.proposal import Proposal, check_submission

__all__ = [
    "DEFAULT_POLICY",
    "Deadline",
    "Decision",
    "Finding",
    "PolicyDocument",
    "Proposal",
    "check_submission",
]
