"""Heatmaps of histogram values, drawn the way the appliance drew them.

Pure computation, no HTTP: the API turns requests into calls here.

* :mod:`.matrix`: the counts per (column, row) over a linear or log value axis
  (:func:`heatmap_matrix`, :class:`HeatmapMatrix`, :func:`tidy_max`), and the part of a column
  that isolated or excluded keys leave (:func:`keys_shown`);
* :mod:`.spread`: how each stored bucket is spread over the rows it overlaps
  (shared by the matrix and the details, so both count alike);
* :mod:`.png`: the matrix drawn as a PNG in the appliance's colours (:func:`render_png`);
* :mod:`.details`: the counts of one cell, by key (:func:`cell_details`), and every key of a
  range with its count (:func:`key_totals`);
* :mod:`.lines`: average and percentile lines over the columns
  (:func:`average_line`, :func:`percentile_lines`);
* :mod:`.args`: the argument checks they share (errors name the argument).
"""

from fleetscope.api.heatmap.details import cell_details, key_totals
from fleetscope.api.heatmap.lines import average_line, percentile_lines
from fleetscope.api.heatmap.matrix import Column, HeatmapMatrix, heatmap_matrix, keys_shown, tidy_max
from fleetscope.api.heatmap.png import render_png

__all__ = [
    "Column",
    "HeatmapMatrix",
    "average_line",
    "cell_details",
    "heatmap_matrix",
    "key_totals",
    "keys_shown",
    "percentile_lines",
    "render_png",
    "tidy_max",
]
