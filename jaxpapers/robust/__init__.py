"""Adversarial robustness distillation (family 4: CIARD and its baselines).

* :mod:`~jaxpapers.robust.attacks`: pure ℓ∞ attacks (FGSM, PGD with CE or KL,
  CW∞, APGD-CE / APGD-DLR) and batched robust accuracy.
"""
