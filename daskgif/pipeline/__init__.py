"""The image ETL pipeline: its parameters, its steps, the graph that wires them, and its result.
"""
