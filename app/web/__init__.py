"""The clinician web form: view models (pure), form parsing, templates and static files."""
