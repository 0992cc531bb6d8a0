"""Rollout strategies' own machinery. `canary`: the canary bake (sample, judge); `bluegreen`:
the blue-green deploy and rollback flows and the traffic switch; `drain`: rolling and canary
batches leave the load balancer before they restart (planning, pure); `drainer`: doing it on
the hosts. Rolling itself is `deployer.deploy` (for now)."""
