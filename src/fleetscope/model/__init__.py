"""The vocabulary of fleetscope: types, metrics and fields, predicates (JSON and text),
instrumentations, values and histograms, history tiers, the default instrumentations, and
who may ask what (``access``: roles, tokens, tenants and the scope function).

Depends on nothing else in the package (only on libraries such as msgspec, NumPy, RE2)."""
