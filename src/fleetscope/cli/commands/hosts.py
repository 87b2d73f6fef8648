"""`fleetscope hosts`: the agents and what they run."""

from __future__ import annotations

from fleetscope.cli.client import DEFAULT_URL, Api
from fleetscope.cli.commands.common import AsJson, Url, print_json, reporting_errors, stdout_console
from fleetscope.cli.views import hosts_table


def hosts(url: Url = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List the agents: online, stale or gone, with what they run and their warnings."""
    with reporting_errors(url), Api.from_environment(url) as api:
        found = api.hosts()
        if as_json:
            print_json({"hosts": found})
        else:
            stdout_console().print(hosts_table(found))
