"""Blue-green: deploy the idle color, then point the load balancer(s) at it; roll back by
pointing them back. deploy.py: the deploy flow (and its post-deploy watch); rollback.py: the
rollback flow; switch.py: moving traffic between colors on every load balancer. Planning
(colors, upstream configs, the live color) is traffic.py, pure."""
