"""APTSHIELD — real-time APT detection on Linux hosts from audit logs.

Variants:
  tiny     seconds: a few simulated minutes of a small web server with one attack of each
           kind (web exploit → dropped tool → persistence → exfiltration; file-less
           curl | bash and memfd; a remote-access trojan beaconing), batch mode checked.
  default  the embedded simulated host over a few hours (≈ 1-2M audit lines), all three
           attacks interleaved with benign web, cron, package, ssh and build activity.
  paper    the user's logs: --config.data.source=audit|cdm --config.data.path=<file or dir>
           (raw /var/log/audit/audit.log* or DARPA TC CDM JSON lines), optionally
           --config.data.truth=<truth.json> for the attack metrics.
"""

import ml_collections

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown aptshield variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "aptshield"
    c.variant = variant
    c.seed = 0
    c.mesh = ml_collections.ConfigDict(
        {"axes": ("data", "model"), "shape": (-1, 1), "axis_types": "auto"}
    )
    c.log_every = 200_000  # progress line every this many events
    c.data = ml_collections.ConfigDict()
    c.data.source = "generator"  # generator | audit | cdm
    c.data.preset = "default"  # generator preset: tiny | default
    c.data.path = ""  # audit/cdm: a file or a directory
    c.data.truth = ""  # optional truth JSON (the generator's format)
    c.detect = ml_collections.ConfigDict()
    c.detect.rules = ""  # a rule table in attack_rules.toml's format ("" = the shipped one)
    c.detect.min_tactics = 4  # tactics an entity's labels must cover (detector docstring)
    c.detect.reduce = True  # redundant-semantics skipping (pruning is always on)
    c.detect.batch = True  # also run the JAX batch mode and compare its labels
    c.detect.block = 256  # events pulled from the parser at a time (1: no added latency)
    c.detect.max_objects = 1 << 18  # unlabelled object nodes kept (LRU beyond)
    c.detect.max_cache = 1 << 18  # redundancy-cache entries (cleared beyond)
    c.detect.max_labelled = 1 << 20  # labelled nodes kept (oldest inactive forgotten beyond)
    c.lock()
    if variant == "tiny":
        c.data.preset = "tiny"
        c.log_every = 10_000
    elif variant == "paper":
        c.data.source = "audit"
        c.detect.batch = False
    return c
