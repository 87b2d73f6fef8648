"""The vocabulary of fleetscope: types, metrics and fields, predicates,
instrumentations, values and histograms. Depends on nothing else in the package."""
