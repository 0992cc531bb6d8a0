"""Rollout strategies' own machinery. `drain`: rolling and canary batches leave the load
balancer before they restart (planning, pure); `drainer`: doing it on the hosts."""
