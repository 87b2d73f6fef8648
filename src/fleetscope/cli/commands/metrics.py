"""`fleetscope metrics`: the metric catalogue."""

from __future__ import annotations

from fleetscope.cli.client import DEFAULT_URL, Api
from fleetscope.cli.commands.common import AsJson, Url, print_json, reporting_errors, stdout_console
from fleetscope.cli.views import metrics_table


def metrics(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List the metrics the fleet can answer about, with their fields."""
    with reporting_errors(url), Api.from_environment(url) as api:
        found = api.metrics()
        if as_json:
            print_json({"metrics": found})
        else:
            stdout_console().print(metrics_table(found))
