"""Alerting: rules evaluated on final slots where they are finalised, and notifications sent.

``engine.py`` evaluates the rules of the instrumentations this process aggregates (an
aggregator listener), keeps each alert's state in the store so a takeover neither repeats nor
forgets, and hands notifications to ``deliver.py``, which sends them to the receivers
(``alertmanager.py``, ``webhook.py``, ``email.py``) off the evaluation path, with retries.

May import model and store (the alert tables); never api, agent, sources or processes: a
renderer of panel images is given to it by the process that assembles it.
"""
