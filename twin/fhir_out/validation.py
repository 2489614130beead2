"""Every resource Novamind gives out is checked against the FHIR models before it leaves.

Why ``fhir.resources``: the maintained pydantic models of every FHIR resource, the same ones
bulk ingest reads with (:mod:`twin.ingest.fhir`). FHIR R4 is validated with its R4B models
(4.3.0), whose shape is R4's for every element written here; the resources declare R4
(``fhirVersion`` 4.0.1). A resource that fails is a defect of the builder, not of the data: it
is raised, never sent.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["checked", "model_of"]


@functools.cache
def model_of(resource_type: str) -> Any:
    """The ``fhir.resources`` R4B model class of a resource type (imported on first use)."""
    from fhir.resources.R4B import get_fhir_model_class  # loading the models takes ~0.3 s

    return get_fhir_model_class(resource_type)


def checked(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` itself, once its FHIR model has validated it.

    Raises:
        pydantic.ValidationError: The resource is not valid FHIR (a defect here).
    """
    model_of(str(resource["resourceType"])).model_validate(resource)
    return resource
