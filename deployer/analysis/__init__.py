"""Judging a rollout on the app's real traffic: a Prometheus query client (prometheus.py),
the default PromQL and its sandboxed rendering (queries.py), the canary rules applied to
Prometheus' numbers (rules.py), one canary step's analysis from every source (step.py) and
the post-deploy watch (watch.py). Never changes a host: the flows act on the verdicts."""
