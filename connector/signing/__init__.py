"""XMLDSig signing and verification, key sources, trust store, chain and revocation checks."""
