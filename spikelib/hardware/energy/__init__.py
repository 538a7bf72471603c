"""Energy estimation from measured spike activity: exact op counting, cited energy models, accounting, reports."""
