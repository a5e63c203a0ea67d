"""The project's own package: imported from the checkout, never installed."""

WHERE = "the repository"
