"""Which key signs what: DSC facts, key state records in the HSM, the live registry, dev CA."""
