"""Blue-green: deploy the idle color, then point the load balancer(s) at it; roll back by
pointing them back. Planning (colors, upstream configs) is `deployer.traffic`, pure."""
