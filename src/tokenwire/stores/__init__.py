"""The stores: where resumable streams and stored responses are kept (this process, Redis),
and what replicas share about running streams (leases, reader presence, cancels).

`stream_store` and `response_store` hold the contracts and their configuration; the others
implement them. Nothing is re-exported here, so importing one store never imports Redis.
"""
