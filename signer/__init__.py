"""hcert-signer: batch-signs EU DCC payloads into HC1: strings with keys held in a PKCS#11 HSM."""
