"""What several test modules and the benchmarks share: reference models, the architecture zoo,
the report's tiny demo context. Model code here never imports pellucid, except ``report``."""
