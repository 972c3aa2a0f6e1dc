"""jaxpapers: faithful, fast, reusable JAX/Flax reimplementations of recent papers.

Importing the package has no side effects: families (``jaxpapers.recsys`` ...) and
the shared machinery (``jaxpapers.core``, ``jaxpapers.data``) are imported on demand.
"""

__version__ = "0.1.0"
