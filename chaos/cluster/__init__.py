"""Clusters: one protocol over nodes (redis, proxies, api, workers), implemented by the local and docker backends."""
