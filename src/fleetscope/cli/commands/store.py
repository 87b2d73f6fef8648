"""`fleetscope store stats`: what the history store holds."""

from __future__ import annotations

from typing import Annotated

import typer

from fleetscope.cli.client import DEFAULT_URL, Api
from fleetscope.cli.commands.common import AsJson, Url, print_json, reporting_errors, stdout_console
from fleetscope.cli.views import store_stats_table


def store_stats(
    url: Url = DEFAULT_URL,
    store: Annotated[str | None, typer.Option("--store", help="Read this store directly "
                                              "(sqlite:///path or postgresql://...) instead of asking "
                                              "a server.", show_default=False)] = None,
    as_json: AsJson = False,
) -> None:
    """Per instrumentation and history tier: points, bytes on disk, bytes per sample, oldest and newest."""
    with reporting_errors(url):
        if store:
            from fleetscope.store.history import History
            from fleetscope.store.open import open_store

            opened = open_store(store, create=False)  # a typo must not create an empty store
            try:
                body = History(opened).report()
            finally:
                opened.close()
        else:
            with Api.from_environment(url) as api:
                body = api.store_stats()
        if as_json:
            print_json(body)
            return
        stdout_console().print(store_stats_table(body))
