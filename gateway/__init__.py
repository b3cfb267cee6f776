"""``turnout gateway``: OpenAI's chat completions API over Turnout's topics, so that an
application with an OpenAI SDK uses the router without knowing Kafka exists.

``keys`` authenticates callers (an API key is a tenant), ``wire`` translates OpenAI's
request JSON into Turnout's records and the routing into headers (the answer's body is
``turnout.producers.openai_format``'s, shared with batch jobs), ``errors`` gives every
failure its OpenAI status and body, ``sse`` writes a streamed answer as server-sent
events, ``replies`` names this instance's reply topic, and ``server`` is the aiohttp app.
"""
