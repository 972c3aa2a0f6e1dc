"""Physics surrogates for solids and fluid–solid interaction (family 3: LaDEEP, FilDeep, Unisoma, Fisale)."""
