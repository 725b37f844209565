"""GPU-hours, their cost, the usage API and budgets (issue 20)."""
