"""The code systems and element URLs of what Novamind says in FHIR, in and out.

Standard codes come first (LOINC for what a patient reports or a device measures, RxNorm for
drugs, SNOMED CT for conditions, UCUM for units). What has no standard code (the twin's own
estimates, platform events such as an EMA rating or ln RMSSD) is coded in Novamind's own
CodeSystem, :data:`CODE_SYSTEM`, under the product's canonical namespace :data:`NAMESPACE`. The
codes are listed in :data:`CODES` (the CodeSystem's concepts, as ``docs/fhir.md`` publishes
them).

Bulk ingest reads two of them back: a resource tagged :data:`MODEL_DERIVED` is refused (a twin's
estimate is no observation of the patient: ingesting it would feed the model its own output),
and a Patient's :data:`ENROLMENT_EXTENSION` is their enrolment instant (day 0 of their time
axis), so that an export ingested elsewhere puts every record on the same day.
"""

from __future__ import annotations

__all__ = [
    "CODES",
    "CODE_SYSTEM",
    "ENROLMENT_EXTENSION",
    "IDENTIFIER_SYSTEM",
    "LOINC_SYSTEM",
    "MODEL_DERIVED",
    "NAMESPACE",
    "RXNORM_SYSTEM",
    "SNOMED_SYSTEM",
    "UCUM_SYSTEM",
    "is_model_derived",
]

LOINC_SYSTEM = "http://loinc.org"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED_SYSTEM = "http://snomed.info/sct"
UCUM_SYSTEM = "http://unitsofmeasure.org"

#: The product's canonical base for FHIR artefacts (code systems, extensions, identifiers).
NAMESPACE = "https://novamind.health/fhir"
#: Novamind's CodeSystem: the twin's outputs and platform events without a standard code.
CODE_SYSTEM = f"{NAMESPACE}/CodeSystem/novamind"
#: The system of the identifier a Patient carries for its Novamind patient id.
IDENTIFIER_SYSTEM = f"{NAMESPACE}/sid/patient-id"
#: A Patient's enrolment instant (``valueDateTime``): day 0 of their twin's time axis.
ENROLMENT_EXTENSION = f"{NAMESPACE}/StructureDefinition/enrolment"
#: The ``meta.tag`` code of a resource the twin derived (an estimate, a risk assessment).
MODEL_DERIVED = "model-derived"

#: The concepts of :data:`CODE_SYSTEM`: code -> display.
CODES: dict[str, str] = {
    MODEL_DERIVED: "Derived by the Novamind digital twin's model (not observed)",
    "latent-severity": "Latent depressive severity, posterior mean (PHQ-9 points, 0-27)",
    "credible-interval-95": "Central 95% posterior credible interval",
    "posterior-sd": "Posterior standard deviation",
    "particle-filter": "Bayesian particle filter over the patient's event log",
    "twin-forecast": "Monte-Carlo forecast of the twin under continued care",
    "episode": "In a depressive episode now (posterior probability)",
    "severe": "Latent severity at least 15 PHQ-9 points (moderately severe or worse)",
    "remission": "PHQ-9 below 5 at the week",
    "response": "PHQ-9 at most half the course's baseline at the week",
    "deterioration": "PHQ-9 at least 5 points above the latest observed at some week within",
    "ema-negative-affect": "Momentary negative affect, 1-7 Likert rating (EMA)",
    "ln-rmssd": "Heart-rate variability, natural log of RMSSD in ms",
    "wear-time": "Hours the wearable was worn over the measured period",
    "prior-episodes": "Depressive episodes before the current one",
    "anxiety-comorbid": "A comorbid anxiety disorder (generalised, panic, social phobia)",
    "therapy-session": "Attended therapy session",
    "psychotherapy": "Psychotherapy session (CBT, IPT or behavioural activation)",
    "cbti": "Cognitive behavioural therapy for insomnia session",
    "care-status": "In clinical follow-up (true) or follow-up ended (false)",
    "care-setting": "Care setting: usual, collaborative or trial-like care",
}


def is_model_derived(resource: object) -> bool:
    """Whether a FHIR resource (JSON) is tagged as derived by the twin's model."""
    if not isinstance(resource, dict):
        return False
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return isinstance(tags, list) and any(
        isinstance(t, dict) and t.get("system") == CODE_SYSTEM and t.get("code") == MODEL_DERIVED
        for t in tags
    )
