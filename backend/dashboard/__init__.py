"""Manager dashboards: a project's progress, throughput, quality and model rounds, computed in SQL."""
