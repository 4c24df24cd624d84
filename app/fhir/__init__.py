"""FHIR R4 in: Bundles mapped to features by the codes of the feature catalogue."""
