"""order_engine: the market-order execution engine.

Free of Chalice, HTTP and the local runtime: handlers in functions/ call into it,
and it talks only to PostgreSQL, SQS, the API Gateway management API and DEX venues.
"""
