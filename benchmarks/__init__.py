"""Throughput benchmarks of jaxpapers against installed peers (``python -m benchmarks.run``)."""
