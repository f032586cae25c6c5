from tests.serving.conftest import private_redis, redis_url  # noqa: F401  (the Redis fixtures)
