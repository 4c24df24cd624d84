"""CDS Hooks 2.0: the service EHRs call, and how they authenticate (signed client JWTs)."""
