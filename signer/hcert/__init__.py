"""The HCERT format: DCC payload → CWT → COSE_Sign1 → zlib → base45 → ``HC1:`` (HCERT.md §1)."""
