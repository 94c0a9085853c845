"""The SQL behind the api's handlers, one module per area (routes → handlers → queries).

Functions take an open connection and return rows or plain values; they decide nothing
about HTTP, and the handlers hold no SQL.
"""
