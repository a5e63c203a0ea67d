"""Who looks at apps and what apps use: view events from the proxy (`views`), their
aggregates and retention (`store`), the Analytics page's reports (`reports`), and the memory
and CPU samples of running apps (`usage`)."""
