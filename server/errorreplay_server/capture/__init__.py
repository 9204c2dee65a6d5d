"""The capture pipeline: validate, scrub secrets, fingerprint, persist, publish, schedule enrichment."""
