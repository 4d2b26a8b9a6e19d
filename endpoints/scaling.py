"""Autoscaling measures: which an endpoint may scale on, their valid thresholds, and the defaults."""

DEFAULT_METRIC = "hardwareUsage"
# The thresholds ``compute.scaling.measure`` may give, per metric, and the one taken when it gives none.
MEASURES = {"hardwareUsage": (1.0, 100.0), "pendingRequests": (0.01, 10000.0)}
DEFAULT_THRESHOLD = {"hardwareUsage": 80.0, "pendingRequests": 1.5}


def scaling_target(metric: str | None, threshold: float | None) -> tuple[str, float]:
    """The metric and threshold an endpoint scales on: its own, or the defaults where it gives none."""
    metric = metric or DEFAULT_METRIC
    return metric, DEFAULT_THRESHOLD[metric] if threshold is None else threshold
