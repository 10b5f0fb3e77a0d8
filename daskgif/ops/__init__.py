"""Running pipelines as a service would: schedules, history, webhooks, and the cluster to run on.
"""
