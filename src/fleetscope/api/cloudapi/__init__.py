"""Joyent CloudAPI's analytics routes (``/:login/analytics...``), so that the original clients
(node-smartdc 8's ``sdc-*instrumentation*`` commands, scripts written for Cloud Analytics) work
against fleetscope.

* :mod:`.errors`: the original API's error shape, ``{"code", "message"}``.
* :mod:`.httpsig`: HTTP Signature authentication with the account's SSH keys.
* :mod:`.mapping`: the original modules, stats and fields and the fleetscope metrics they map to.
* :mod:`.shapes`: instrumentations and values in the original JSON shapes.
* :mod:`.transforms`: the transformations of IP-valued keys (``reversedns``, ``geolocate``).
* :mod:`.reversedns`: the bounded, cached reverse resolver behind ``reversedns``.

The routes are in :mod:`fleetscope.api.routes.cloudapi`. They are not in fleetscope's OpenAPI
document: they answer in the original API's shapes, which its own documentation describes.
"""
