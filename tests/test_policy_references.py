"""Documentation that is checked (M-7.1, E-2.6): every document a partner reports is a reference
— a URL or a repository path — and each is its own. The rule (policy/references.py), the
request forms that apply it at the API, and the stored forms that never do (recorded histories
hold what was sent before it, and must replay)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from policy.forms import (
    Form,
    ImplementationReport,
    ImplementationReportRequest,
    MigrationDocumentation,
    MigrationDocumentationRequest,
)
from policy.references import check_references, reference_key
from testdata.factories import IMPLEMENTATION, MIGRATION_DOCS

SAME_AS_GUIDE = "the same reference as migration_guide: each document is its own"


@pytest.mark.parametrize(
    "value",
    [
        "https://git.example.com/acme/widget/pull/1",
        "http://docs.example.com:8080/widget?v=2#install",
        "https://[2001:db8::1]/guide",
        "docs/migration.md",
        "docs/migration.md#compatibility-notes",
        "ci/results/1.xml",
        "docs/v1.2/@scope/+extra_notes-1.md",
        "docs/",
        "CHANGELOG.md",
    ],
)
def test_a_url_or_a_repository_path_is_a_reference(value: str) -> None:
    """M-7.1, E-2.6: an http(s) URL with a host, or a relative repository path (#anchor too)."""
    assert reference_key(value) is not None
    assert check_references({"migration_guide": value}, rule="M-7.1").allowed


@pytest.mark.parametrize(
    "value",
    [
        "../x",  # out of the repository
        "docs/../../etc/passwd",
        "/etc/passwd",  # absolute
        "has space",
        "docs/migration guide.md",
        "https://",  # no host
        "https:///docs",
        "https://exa mple.com/docs",
        "https://example.com:port/docs",
        "https://-example-.com/",
        "ftp://example.com/docs",
        "mailto:docs@example.com",
        "javascript:alert(1)",
        "C:\\docs\\guide.md",
        "docs//guide.md",
        "docs/guide.md#",  # an empty anchor
        "see the wiki",
        "docs/guide.md\x00",
    ],
)
def test_anything_else_is_not_a_reference(value: str) -> None:
    """M-7.1: a value that is not a reference is refused on its field, with the rule."""
    decision = check_references({"compatibility_notes": value}, rule="M-7.1")
    assert [(f.field, f.rule) for f in decision.findings] == [("compatibility_notes", "M-7.1")]
    assert decision.findings[0].message.startswith("not a reference")


def test_a_reference_repeated_for_another_document_is_refused_on_the_second() -> None:
    """M-7.1: `x` given for two documents — the second (and any later) is refused, naming the
    first; the first stands. Stripped before they are compared."""
    decision = check_references(
        {
            "migration_guide": "x",
            "compatibility_notes": " x ",
            "version_notes": "docs/versions.md",
            "workflow_changes": "x",
        },
        rule="M-7.1",
    )
    assert decision.errors() == {
        "compatibility_notes": f"{SAME_AS_GUIDE} (M-7.1)",
        "workflow_changes": f"{SAME_AS_GUIDE} (M-7.1)",
    }


def test_a_urls_scheme_and_host_are_compared_without_case() -> None:
    """E-2.6: `HTTPS://Git.Example.com/a` is `https://git.example.com/a`; its path is not."""
    same = check_references(
        {"development": "https://git.example.com/a", "testing": "HTTPS://Git.Example.com/a"},
        rule="E-2.6",
    )
    assert [f.field for f in same.findings] == ["testing"]
    other_path = check_references(
        {"development": "https://git.example.com/a", "testing": "https://git.example.com/A"},
        rule="E-2.6",
    )
    assert other_path.allowed


def test_an_optional_document_is_checked_when_given() -> None:
    """M-7.1: tutorials and onboarding guides may be left out; given, each is a reference and
    its own."""
    assert check_references({**MIGRATION_DOCS, "tutorials": None}, rule="M-7.1").allowed
    assert check_references({**MIGRATION_DOCS, "tutorials": "  "}, rule="M-7.1").allowed
    decision = check_references(
        {
            **MIGRATION_DOCS,
            "tutorials": MIGRATION_DOCS["migration_guide"],
            "onboarding_guides": "/onboarding",
        },
        rule="M-7.1",
    )
    assert [f.field for f in decision.findings] == ["tutorials", "onboarding_guides"]


def _errors(form: type[Form], data: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        form.model_validate(data)
    return {str(e["loc"][0]): e["msg"] for e in info.value.errors()}


def test_the_request_forms_refuse_every_bad_document_at_once() -> None:
    """M-7.1, E-2.6: a request names each missing document, each non-reference and each
    repeat in one answer, every message ending with its rule."""
    MigrationDocumentationRequest.model_validate(MIGRATION_DOCS)
    ImplementationReportRequest.model_validate(IMPLEMENTATION)
    sent = {
        "migration_guide": "docs/guide.md",
        "compatibility_notes": "docs/guide.md",
        "version_notes": "has space",
        "workflow_changes": "docs/workflows.md",
        "tutorials": "../tutorials",
    }
    errors = _errors(MigrationDocumentationRequest, sent)
    assert set(errors) == {
        "permission_changes",
        "compatibility_notes",
        "version_notes",
        "tutorials",
    }
    assert errors["permission_changes"] == "required (M-7.1)"
    assert errors["compatibility_notes"] == f"{SAME_AS_GUIDE} (M-7.1)"
    for field in ("version_notes", "tutorials"):
        assert errors[field].startswith("not a reference") and errors[field].endswith("(M-7.1)")
    report = {"development": "PR-1", "testing": "PR-1", "documentation": "/docs"}
    assert set(_errors(ImplementationReportRequest, report)) == {"testing", "documentation"}


def test_stored_forms_load_what_was_sent_before_the_check() -> None:
    """M-7.1, E-2.6 and replay: the forms the workflows load from recorded histories (`x` five
    times, `PR-1`) never refuse them — the check is the request form's and the Update
    validator's (`references()`), which recorded runs never run again."""
    docs = MigrationDocumentation.model_validate(dict.fromkeys(MIGRATION_DOCS, "x"))
    assert docs.migration_guide == "x"
    assert [f.field for f in docs.references().findings] == list(MIGRATION_DOCS)[1:]
    report = ImplementationReport(development="PR-1", testing="CI 1", documentation="PR-1")
    assert [f.field for f in report.references().findings] == ["testing", "documentation"]
    assert {f.rule for f in report.references().findings} == {"E-2.6"}
