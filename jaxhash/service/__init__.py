"""The search service behind ``python -m jaxhash.serve``: an HTTP API and a web page over an index.

One module per job: ``catalog`` (the served index, its item ids, persisted changes), ``engine``
(the worker thread that batches concurrent searches), ``uploads`` (decoding untrusted image
bytes), ``limits`` (the request body limit), ``stats``, ``app`` (the routes), ``page/`` (the web
page). Importing ``jaxhash`` never imports this package; it needs the ``serve`` extra.
"""
