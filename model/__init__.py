"""Pure recommender math: item text encoder, preference vectors, top-K retrieval, datasets.

No Kafka, no HTTP: everything here is a plain function or a small class over numpy / torch,
tested without a broker.
"""
