"""Rollout strategies: the flows and their own machinery. `rolling`: the rolling and canary
deploy flow (batches; a canary bakes between steps); `canary`: the canary bake (sample,
judge); `bluegreen`: the blue-green deploy and rollback flows, the traffic switch and their
planning; `drain`: rolling and canary batches leave the load balancer before they restart
(planning, pure); `drainer`: doing it on the hosts; `balancers`: the load balancer planning
blue-green and drain share (pure). `deployer.api.runs` picks the flow."""
