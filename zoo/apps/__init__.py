"""What the CLI's commands do, as functions: eval, predict, compare, report."""
