"""BFAD: PHP WebShell detection with LLMs shown the right code (COLM 2025).

Modules: :mod:`.php` (safe reading, tree-sitter parsing), :mod:`.critical` (Critical Function
Filter), :mod:`.extract` (Context-Aware Code Extraction), :mod:`.wbfp` (Weighted Behavioral
Function Profiling), :mod:`.prompt` and :mod:`.backends` (local Flax LLM, OpenAI-compatible
HTTP), :mod:`.corpus` (embedded labelled generator, directory reader), :mod:`.baselines`
(token-CNN and AST-GNN), :mod:`.bfad` (the experiment). Analysed code is never executed.
"""
