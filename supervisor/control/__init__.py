"""The control loop: the reconciler (desired state -> runtime, the one writer of the route
table), the lifecycle of one app (build, start, health, swap, crash handling), the leader
lease, scheduled jobs (hibernation, usage samples, the email outbox, GitHub refresh) and the
choice of engine at start."""
