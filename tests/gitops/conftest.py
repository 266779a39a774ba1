from tests.chart.conftest import chart_crds  # noqa: F401  (the chart's CRDs on the test control plane)
