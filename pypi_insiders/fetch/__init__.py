"""Stage one: watched git repositories, their version tags, one build per tag, published into the store."""
