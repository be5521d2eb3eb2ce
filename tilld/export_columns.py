"""The journal export's CSV columns, in order.

Its own module because tillctl reads them too, and tillctl imports nothing
beyond the standard library (it runs on a till's system Python for any user).
"""

EXPORT_FIELDS = ("seq", "uuid", "type", "created_at", "prev_hash", "hash", "body")
