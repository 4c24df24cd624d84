"""The feature reference (docs/FEATURES.md), written from the loaded catalogue.

The feature ids are a public contract: integrators send them and registries name columns after
them. Their reference is generated from the same catalogue `GET /v1/features` serves, by
`eligo rules features --markdown`, so it says what the service accepts; a test holds the
committed file to the generated text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from app.engine.model import Feature
from app.engine.schema import Coding, FeatureSpec, FeatureType

# Code systems by the names clinicians and integrators know them by.
SYSTEMS = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://www.whocc.no/atc": "ATC",
    "https://eligo.example/fhir/CodeSystem/eligo-observations": "Eligo local",
}

HEADER = """\
# Patient features

<!-- Generated from rules/features.yaml by `eligo rules features --markdown --out
docs/FEATURES.md`; do not edit by hand (tests/cli/test_features_doc.py compares the two). -->

The values the rules decide on, by the ids API callers send (`POST /v1/evaluations`,
`GET /v1/features` serves the same catalogue as JSON), the clinician form asks for and
registry columns are named after. {count} features in {groups} groups.

How to send a value: a number in the canonical unit (UCUM), or `{{"value": …, "unit": "…"}}`
in any unit UCUM converts to it (the *form* units are the ones the clinician form offers); a
boolean; one of an enum's values; or null / absent for unknown, which is never taken as
normal. A value outside the plausible range is an input error (422), not evaluated. From FHIR,
a feature is read by its codes, never by display text: the newest final Observation no older
than the freshness window, or an active, confirmed Condition. *Confirmations* are clinician
judgements that no record holds: send `true` or `false` after asking the question.
"""


def render_markdown(features: Mapping[str, Feature]) -> str:
    """The whole document: one section per form group, in the catalogue's order."""
    groups: dict[str, list[FeatureSpec]] = {}
    for feature in features.values():
        groups.setdefault(feature.spec.group, []).append(feature.spec)
    parts = [HEADER.format(count=len(features), groups=len(groups))]
    for group, specs in groups.items():
        parts.append(_section(group, specs))
    return "\n".join(parts)


def _section(group: str, specs: list[FeatureSpec]) -> str:
    rows = [
        f"## {group.replace('_', ' ').capitalize()} ({len(specs)})",
        "",
        "| id | type | unit | allowed | what it is | FHIR codes | freshness |",
        "|---|---|---|---|---|---|---|",
    ]
    rows.extend(_row(spec) for spec in specs)
    return "\n".join(rows) + "\n"


def _row(spec: FeatureSpec) -> str:
    freshness = f"{spec.max_age_days} days" if spec.max_age_days else ""
    cells = [
        f"`{spec.id}`",
        spec.type.value,
        _unit(spec),
        _allowed(spec),
        _meaning(spec),
        _codes(spec.codes, spec.absent_in_record),
        freshness,
    ]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _unit(spec: FeatureSpec) -> str:
    if spec.unit is None:
        return ""
    unit = f"`{spec.unit}`"
    if spec.other_units:
        unit += " (form: " + ", ".join(f"`{other}`" for other in spec.other_units) + ")"
    return unit


def _allowed(spec: FeatureSpec) -> str:
    if spec.type is FeatureType.ENUM and spec.values:
        return ", ".join(f"`{value}`" for value in spec.values)
    if spec.range is not None:
        low, high = spec.range
        return f"{low:g} – {high:g}"
    return "true, false" if spec.type is FeatureType.BOOLEAN else ""


def _meaning(spec: FeatureSpec) -> str:
    parts = [f"**{spec.label}**: {spec.description}"]
    if spec.confirmation is not None:
        proceeds = "yes" if spec.confirmation.proceeds_when else "no"
        parts.append(
            f"Confirmation: *{spec.confirmation.question}* (the patient goes on when {proceeds})"
        )
    parts.extend(
        f"Implied `{_value(rule.value)}` when `{rule.when}`: {rule.because}" for rule in spec.derive
    )
    if spec.molar_mass is not None:
        parts.append(f"Molar mass {spec.molar_mass:g} g/mol (substance units convert)")
    return "<br>".join(parts)


def _value(value: bool | str | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else value


def _codes(codes: Iterable[Coding], absent_in_record: str) -> str:
    by_system: dict[str, list[str]] = {}
    for code in codes:
        by_system.setdefault(SYSTEMS.get(code.system, code.system), []).append(code.code)
    text = "; ".join(f"{system} {', '.join(found)}" for system, found in by_system.items())
    if by_system and absent_in_record == "false":
        text += " (none active and confirmed on the record: false)"
    return text


def _cell(text: str) -> str:
    """Table cells: one line, and a `|` in the text does not end the cell."""
    return " ".join(text.split()).replace("|", "\\|")
