"""``turnout gateway``: OpenAI's chat completions API over Turnout's topics, so that an
application with an OpenAI SDK uses the router without knowing Kafka exists.

``keys`` authenticates callers (an API key is a tenant), ``wire`` translates between
OpenAI's JSON and Turnout's records, ``errors`` gives every failure its OpenAI status and
body, ``sse`` writes a streamed answer as server-sent events, ``replies`` owns this
instance's reply topic, and ``server`` is the aiohttp app.
"""
