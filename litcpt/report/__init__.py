"""Reading finished runs and showing them: the paper-style table, plots (PNG, Agg canvas) and the per-step
``metrics.csv`` logger that the report reads."""
