"""The streaming shell: Faust app, topics, wire schemas, embedded broker, metrics.

Imports model/, never serving/.
"""
