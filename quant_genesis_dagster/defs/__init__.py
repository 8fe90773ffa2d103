"""The thin Dagster layer: partitions, resources, assets, checks and jobs over the domain code."""

import warnings

import dagster as dg

# Single-run backfill policies are what make year-long backfills one vectorized run; Dagster
# still labels the parameter beta. Known and chosen, so not repeated on every import.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
